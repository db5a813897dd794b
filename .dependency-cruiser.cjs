/**
 * The layering of DESIGN.md §3 as rules a tool checks (`npm run deps`, run by scripts/test.sh
 * next to lint). docs/development.md draws the same picture; change both together.
 *
 *   cli/  http/  scheduler/          adapters: the lifecycle facade (lifecycle/index.ts) and policy/
 *     \    /                          (cli/ and http/ also the operator commands, admin/index.ts)
 *     admin/                          operator commands, one implementation each: facade and policy/
 *          \    |    /
 *        lifecycle/  audit/          use cases: the only code that combines the parts below
 *        /    |     \
 *  policy/  store/  backends/        policy/ is pure and imports nothing of ours
 *
 * main.ts (and daemon.ts, which serve runs) is the composition root: the one place that builds
 * concrete classes and may import anything.
 *
 * packages/verify (@keywarden/verify) is the relying-party library, published on its own: it
 * imports Node's built-ins and nothing else (no npm package, nothing of the daemon), so it installs
 * without native builds; its middleware entries may name their framework's types. The daemon uses
 * it through its entry points only, like any other user, so there is one validation implementation
 * and the package's inside can change freely.
 */
const ADAPTERS = '^src/(cli|http|scheduler)/';

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycles: a cycle makes two modules one, and load order a bug source.',
      from: { path: '^(src|packages/verify/src)/' },
      to: { circular: true },
    },
    {
      name: 'policy-is-pure',
      severity: 'error',
      comment: 'policy/ holds the rules and vocabulary: it imports nothing of ours.',
      from: { path: '^src/policy/' },
      to: { path: '^src/', pathNot: '^src/policy/' },
    },
    {
      name: 'adapters-use-the-facade',
      severity: 'error',
      comment:
        'cli/, http/ and scheduler/ reach the system through the lifecycle facade (lifecycle/index.ts) ' +
        'and policy/ types, never through the store, backends, audit internals or single use cases.',
      from: { path: ADAPTERS },
      to: {
        path: '^src/',
        pathNot: [
          '^src/policy/',
          '^src/lifecycle/index[.]ts$',
          // The operator commands the CLI and the admin API share (one implementation each).
          '^src/admin/index[.]ts$',
          // An adapter's own folder.
          '^src/$1/',
          // The composition root, which `serve` and the CLI start.
          '^src/(main|daemon)[.]ts$',
          // Process plumbing every adapter may use: logging, config files, exit codes.
          '^src/(log|install-root|process-hardening)[.]ts$',
          '^src/config/',
        ],
      },
    },
    {
      name: 'admin-uses-the-facade',
      severity: 'error',
      comment:
        'admin/ holds the operator commands the CLI and the admin API both run: it works through the ' +
        'lifecycle facade and policy/ only, and knows neither adapter.',
      from: { path: '^src/admin/' },
      to: { path: '^src/', pathNot: ['^src/policy/', '^src/lifecycle/index[.]ts$', '^src/admin/'] },
    },
    {
      name: 'backends-stand-alone',
      severity: 'error',
      comment: 'A backend knows nothing of scopes, time or storage: no store/, lifecycle/ or audit/.',
      from: { path: '^src/backends/' },
      to: { path: '^src/(store|lifecycle|audit|http|cli|scheduler|cluster|admin)/' },
    },
    {
      name: 'store-below-lifecycle',
      severity: 'error',
      comment: 'The store persists; it does not call use cases, backends or adapters.',
      from: { path: '^src/store/' },
      to: { path: '^src/(lifecycle|audit|backends|http|cli|scheduler|cluster|admin)/' },
    },
    {
      name: 'verify-package-has-no-daemon-code',
      severity: 'error',
      comment: '@keywarden/verify is published on its own: nothing of the daemon (src/) inside it.',
      from: { path: '^packages/verify/src/' },
      to: { path: '^(src|migrations|test|bench)/' },
    },
    {
      name: 'verify-package-has-no-dependencies',
      severity: 'error',
      comment:
        '@keywarden/verify installs with no native build and nothing else: Node built-ins only, ' +
        'plus type-only imports of the framework its middleware entry serves (an optional peer).',
      from: { path: '^packages/verify/src/' },
      to: {
        dependencyTypes: [
          'npm',
          'npm-dev',
          'npm-optional',
          'npm-peer',
          'npm-no-pkg',
          'npm-unknown',
          'unknown',
        ],
        pathNot: ['^node_modules/fastify/', '^node_modules/(@types/)?express/'],
      },
    },
    {
      name: 'middleware-names-framework-types-only',
      severity: 'error',
      comment: 'The middleware must load without its framework: fastify/express only as `import type`.',
      from: { path: '^packages/verify/src/' },
      to: { path: '^node_modules/(fastify|express|@types/express)/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'daemon-uses-verify-entry-points',
      severity: 'error',
      comment:
        'The daemon uses @keywarden/verify as a relying party would, through its entry points ' +
        '(what the published package exports), never a file inside it.',
      from: { path: '^src/' },
      to: { path: '^packages/verify/src/', pathNot: '^packages/verify/src/(index|fastify|express)[.]ts$' },
    },
    {
      name: 'use-cases-never-call-adapters',
      severity: 'error',
      comment:
        'Dependencies point inward: lifecycle/ and audit/ never import cli/, http/, scheduler/ or admin/.',
      from: { path: '^src/(lifecycle|audit)/' },
      to: { path: '^src/(cli|http|scheduler|cluster|admin)/' },
    },
    {
      name: 'only-the-root-composes',
      severity: 'error',
      comment: 'Only the composition root imports main.ts/daemon.ts (no back-up imports into it).',
      from: { path: '^src/', pathNot: ['^src/(main|daemon)[.]ts$', '^src/cli/'] },
      to: { path: '^src/(main|daemon)[.]ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: ['^src/', '^packages/verify/src/', '^node_modules/'],
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
  },
};

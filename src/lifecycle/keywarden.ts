import type { Logger } from 'pino';
import { issuedByClientCa } from '../config/tls-options';
import { answerJwks, type JwksAnswer } from './jwks-answer';
import { SignActivityAggregator, DeniedRecorder, type DeniedRecorderOptions } from '../audit/activity';
import { auditCheckpointJob } from '../audit/jobs';
import { checkpointAudit, type CheckpointResult } from '../audit/checkpoint';
import { pruneAudit, type PruneResult } from '../audit/prune';
import { auditChainLength, tailAudit, type AuditTailFilter } from '../audit/query';
import { verifyAuditChain, type AuditVerifyReport, type VerifyAuditOptions } from '../audit/verify';
import type { ChainedRecord } from '../audit/chain';
import type { KeyEvent } from '@keywarden/verify';
import type { Clock } from '../policy/clock';
import type { ConfigReloadOutcome } from '../policy/config-changes';
import { KeywardenError } from '../policy/errors';
import type { KeyRecord } from '../policy/key';
import { shownKeyState, shownKeyStates, type ShownKeyState } from '../policy/key-roles';
import { nextDecisionAt, pickSigningKey } from '../policy/next-actions';
import { planRotations, type PlannedKey } from '../policy/plan';
import type { KeywardenConfig, ScopeConfig } from '../policy/scope';
import type { ScanProgress } from '../scan';
import { maintainClientSeals } from './client-seals';
import { recordConfigReload } from './config-reload';
import {
  addCertificateClient,
  addClient,
  checkClientCertificate,
  checkClientSecret,
  listClients,
  pollClients,
  removeClient,
  rotateClientSecret,
  showClient,
  type AuthenticatedClient,
  type CheckedClientSummary,
  type ClientSummary,
  type IssuedClientSecret,
} from './clients';
import { requireScope, type LifecycleContext } from './context';
import { findOrphans, type OrphanScanReport } from './find-orphans';
import { checkHsm, type HsmCheckReport } from './hsm-check';
import type { ChangedScopes } from './key-cache';
import type { IntegrityReport } from './key-integrity';
import type { PeriodicJob } from './ports';
import { readiness, type Readiness } from './readiness';
import { reconcileAll, reconcileScope, type ReconcileReport } from './reconcile-scope';
import { prepareReconcileChecks, reconcileVerdict, type ReconcileVerdict } from './reconcile-due';
import { revokeKey, type RevokeResult } from './revoke-key';
import { rotateScope } from './rotate-scope';
import { scanForLeaks, type ScanForLeaksOptions, type ScanForLeaksResult } from './scan-for-leaks';
import { scopeOverview, type ScopeOverviewRow } from './scope-overview';
import { sealClients, type SealClientsReport, type SealClientsRequest } from './seal-clients';
import { signToken, type SignedToken, type SignRequest } from './sign-token';
import { verifyKeyRows, type KeyVerifyReport, type RowTrust } from './verify-key-rows';
import { trustedKeys } from './trusted-keys';
import { verifyToken } from './verify-token';
import type { ValidationResult } from '@keywarden/verify';

/** A key row as operators see it: the record, its state in its scope, and how far it is trusted. */
export interface KeyListing {
  record: KeyRecord;
  state: ShownKeyState | 'generating';
  trust: RowTrust;
}

/** A scope with its signing key and its keys counted by state now (`scopes show`). */
export interface ScopeDetails {
  scope: ScopeConfig;
  signingKid: string | null;
  keysByState: Record<string, number>;
}

/** A scope's key timeline from its policy (`plan`), touching nothing. */
export interface ScopePlan {
  scope: ScopeConfig;
  now: Date;
  keys: PlannedKey[];
}

/** What `init` did per scope. */
export interface InitReport {
  scopes: { scope: string; signingKid: string | null; actions: ReconcileReport['done'] }[];
  errors: (ReconcileReport['errors'][number] & { scope: string })[];
}

/** The OpenID-style discovery document of a scope. */
export interface DiscoveryDocument {
  issuer: string;
  jwks_uri: string;
  /** The scope's key-set change stream (Server-Sent Events; docs/api.md). */
  keywarden_key_events_uri: string;
  /**
   * The scope's maxTokenTtl in seconds: the longest `exp - iat` of its tokens. Every JWK carries
   * it too (`max_token_ttl`, what @keywarden/verify reads); here it is for verifiers configured
   * by hand (jose's maxTokenAge, PyJWT), which read a discovery document but not JWK members.
   */
  keywarden_max_token_ttl: number;
  id_token_signing_alg_values_supported: string[];
  token_endpoint_auth_signing_alg_values_supported: string[];
}

/**
 * The use-case facade: everything the CLI, the HTTP routes and the scheduler may ask of
 * keywarden (they import this and policy/ types, nothing else of ours; dependency-cruiser checks
 * it). Each method is one use case over the context the composition root wired, or a small
 * composition of reads for one command (scopeDetails, init); the use cases live in their modules.
 */
export class Keywarden {
  constructor(private readonly ctx: LifecycleContext) {}

  get config(): KeywardenConfig {
    return this.ctx.config;
  }

  get clock(): Clock {
    return this.ctx.clock;
  }

  get log(): Logger {
    return this.ctx.log;
  }

  // ---- scopes and keys ----

  /** The scope's config, or SCOPE_NOT_FOUND. */
  scope(name: string): ScopeConfig {
    return requireScope(this.ctx, name);
  }

  async scopeDetails(name: string): Promise<ScopeDetails> {
    const scope = requireScope(this.ctx, name);
    const now = this.ctx.clock.now();
    const keys = (await this.ctx.keys.listByScope(scope.name)).filter((k) => k.status === 'ready');
    const signing = this.signingKey(scope.name, now);
    const keysByState: Record<string, number> = {};
    for (const k of keys) {
      const s = shownKeyState(k, now, signing);
      keysByState[s] = (keysByState[s] ?? 0) + 1;
    }
    return { scope, signingKid: this.signingKid(scope.name, now), keysByState };
  }

  /** The kid the scope signs with now: from this process's integrity-checked keys, never raw rows. */
  private signingKid(scope: string, now: Date): string | null {
    return this.signingKey(scope, now)?.kid ?? null;
  }

  private signingKey(scope: string, now: Date): KeyRecord | undefined {
    return pickSigningKey(this.ctx.cache.view(scope)?.records ?? [], now);
  }

  /**
   * A key's state as operators see it now (policy/key-roles.ts): `active` only for the key its
   * scope signs with, `superseded` for the other keys still inside their active window.
   */
  keyState(record: KeyRecord): ShownKeyState | 'generating' {
    if (record.status === 'generating') return 'generating';
    const now = this.ctx.clock.now();
    return shownKeyState(record, now, this.signingKey(record.scope, now));
  }

  /** Every configured scope's status now, from this process's key cache (metrics). */
  scopesOverview(): ScopeOverviewRow[] {
    return scopeOverview(this.ctx);
  }

  async plan(scopeName: string, rotations: number): Promise<ScopePlan> {
    const scope = requireScope(this.ctx, scopeName);
    const now = this.ctx.clock.now();
    return {
      scope,
      now,
      keys: planRotations(scope.policy, await this.ctx.keys.listByScope(scope.name), now, rotations),
    };
  }

  /** Key rows (of one scope, or all) with their trust, checked against the backends now. */
  async listKeys(scope?: string): Promise<KeyListing[]> {
    if (scope !== undefined) requireScope(this.ctx, scope);
    const { trust } = await verifyKeyRows(this.ctx);
    const rows = scope !== undefined ? await this.ctx.keys.listByScope(scope) : await this.ctx.keys.listAll();
    const trustOf = (k: KeyRecord) => trust.get(k.id) ?? 'unchecked';
    // Only a row the integrity check trusts can be the one that signs.
    const states = shownKeyStates(rows, this.ctx.clock.now(), (k) => trustOf(k) === 'trusted');
    return rows.map((record) => ({
      record,
      state: states.get(record.id) ?? 'generating',
      trust: trustOf(record),
    }));
  }

  /** A key by kid or a unique kid prefix of 8+ characters, or null. */
  findKey(kidOrPrefix: string): Promise<KeyRecord | null> {
    return this.ctx.keys.findByKidOrPrefix(kidOrPrefix);
  }

  verifyKeys(): Promise<KeyVerifyReport> {
    return verifyKeyRows(this.ctx);
  }

  rotate(scope: string, actor: string): Promise<KeyRecord> {
    return rotateScope(this.ctx, scope, actor);
  }

  revoke(kidOrPrefix: string, reason: string, actor: string): Promise<RevokeResult> {
    return revokeKey(this.ctx, kidOrPrefix, reason, actor);
  }

  /** The last key integrity report of this process (null before the first load). */
  integrityReport(): IntegrityReport | null {
    return this.ctx.cache.integrity.report;
  }

  // ---- published keys and tokens ----

  /** The scope's JWKS as served now (`{"keys":[]}` while keys are not loaded). */
  jwksDocument(scopeName: string): string {
    const scope = requireScope(this.ctx, scopeName);
    const view = this.ctx.cache.view(scope.name);
    return view ? this.ctx.cache.jwks(view).body : '{"keys":[]}';
  }

  /** The JWKS answer for one request (the HTTP hot path; see jwks-answer.ts). */
  answerJwks(scope: ScopeConfig, ifNoneMatch: string | undefined): JwksAnswer | undefined {
    return answerJwks(this.ctx, scope, ifNoneMatch);
  }

  /**
   * The scope's published key set now, as its key-events stream announces it (the JWKS's ETag
   * and kids); undefined while the keys are not loaded yet. Throws SCOPE_NOT_FOUND.
   */
  keySetEvent(scopeName: string): KeyEvent | undefined {
    const scope = requireScope(this.ctx, scopeName);
    const view = this.ctx.cache.view(scope.name);
    if (!view) return undefined;
    const jwks = this.ctx.cache.jwks(view, this.ctx.clock.now());
    return { scope: scope.name, etag: jwks.etag, kids: jwks.kids };
  }

  /**
   * Calls `listener` whenever this process reloaded its keys from the store (a revocation, a new
   * key, by this process or any other), with the scopes whose keys changed (null: any may have);
   * returns the function that stops it.
   */
  watchKeySets(listener: (changed: ChangedScopes) => void): () => void {
    return this.ctx.cache.onReload(listener);
  }

  discovery(scopeName: string, jwksUri: string, keyEventsUri: string): DiscoveryDocument {
    const scope = requireScope(this.ctx, scopeName);
    return {
      issuer: scope.issuer,
      jwks_uri: jwksUri,
      keywarden_key_events_uri: keyEventsUri,
      keywarden_max_token_ttl: scope.policy.maxTokenTtlSeconds,
      id_token_signing_alg_values_supported: [scope.alg],
      token_endpoint_auth_signing_alg_values_supported: [scope.alg],
    };
  }

  sign(scope: string, req: SignRequest): Promise<SignedToken> {
    return signToken(this.ctx, scope, req);
  }

  /**
   * A token an operator asks for (the admin API, `keywarden sign`), recorded in the audit log
   * with the operator as actor: its kid, jti, sub, aud, exp and typ (I7: API clients' tokens are
   * recorded by the token service's sign activity; an operator's must not be the one kind the
   * log cannot trace). The token is handed out only once that record is written.
   */
  async signAsOperator(scope: string, req: SignRequest, actor: string): Promise<SignedToken> {
    const signed = await signToken(this.ctx, scope, req);
    const claims = (req.claims ?? {}) as Record<string, unknown>;
    await this.ctx.audit.record({
      type: 'token.signed',
      actor,
      scope,
      kid: signed.kid,
      data: {
        jti: signed.jti,
        sub: typeof claims.sub === 'string' ? claims.sub : null,
        aud: typeof claims.aud === 'string' || Array.isArray(claims.aud) ? claims.aud : null,
        exp: signed.expiresAt.toISOString(),
        typ: req.typ ?? null,
      },
    });
    return signed;
  }

  verify(scope: string, token: string, audience: string, typ?: string): Promise<ValidationResult> {
    return verifyToken(this.ctx, scope, token, audience, typ);
  }

  // ---- rotation ----

  /** Reconciles every scope once (creating first keys) and says what each scope signs with. */
  async init(actor: string): Promise<InitReport> {
    const reports = await reconcileAll(this.ctx, actor);
    const now = this.ctx.clock.now();
    const scopes: InitReport['scopes'] = this.ctx.config.scopes.map((s) => ({
      scope: s.name,
      signingKid: this.signingKid(s.name, now),
      actions: reports.find((r) => r.scope === s.name)?.done ?? [],
    }));
    return { scopes, errors: reports.flatMap((r) => r.errors.map((e) => ({ scope: r.scope, ...e }))) };
  }

  reconcile(scope: string, actor?: string): Promise<ReconcileReport> {
    return reconcileScope(this.ctx, scope, actor);
  }

  reconcileAll(actor?: string): Promise<ReconcileReport[]> {
    return reconcileAll(this.ctx, actor);
  }

  /**
   * Readies a pass of `reconcileVerdict` calls (the scheduler's start-up pass and heartbeats): at
   * most one key reload, if the store changed, for the whole pass.
   */
  prepareReconcileChecks(): Promise<void> {
    return prepareReconcileChecks(this.ctx);
  }

  /**
   * Whether the scope's reconcile would do anything now, decided in memory (no lock, no store);
   * when not, its next decision instant. Anything uncertain is "due" (reconcile-due.ts).
   */
  reconcileVerdict(scope: string): ReconcileVerdict {
    return reconcileVerdict(this.ctx, scope);
  }

  /** When the scope's next reconcile decision falls due (the scheduler's timer), or null. */
  async nextDecisionAt(scopeName: string): Promise<Date | null> {
    const scope = requireScope(this.ctx, scopeName);
    return nextDecisionAt(
      scope.policy,
      await trustedKeys(this.ctx, scope.name, { reload: false }),
      this.ctx.clock.now(),
    );
  }

  /** Keeps this process's keys current (poll, and LISTEN on PostgreSQL) until the runtime closes. */
  startKeyRefresh(): void {
    this.ctx.cache.start();
  }

  /** Records a config reload (SIGHUP), applied or refused, in the audit log; never throws. */
  recordConfigReload(outcome: ConfigReloadOutcome, actor: string): Promise<void> {
    return recordConfigReload(this.ctx, outcome, actor);
  }

  // ---- operations ----

  /** The store, every backend a scope uses, and key integrity (`/readyz`). */
  readiness(): Promise<Readiness> {
    return readiness(this.ctx);
  }

  hsmCheck(): Promise<HsmCheckReport> {
    return checkHsm(this.ctx);
  }

  scan(
    paths: string[],
    opts: ScanForLeaksOptions & { onProgress?: (p: ScanProgress) => void },
  ): Promise<ScanForLeaksResult> {
    return scanForLeaks(this.ctx, paths, opts);
  }

  /**
   * The scheduling process's periodic work besides reconcile: signed audit checkpoints, API
   * client seal upkeep, and the orphan scan (reported through `onOrphanScan`).
   */
  periodicJobs(
    hooks: { onOrphanScan?(r: OrphanScanReport): void; orphanScanIntervalMs?: number } = {},
  ): PeriodicJob[] {
    const { log } = this.ctx;
    return [
      auditCheckpointJob(this.ctx),
      {
        name: 'API client seals',
        everyMs: 10_000,
        atStart: true,
        run: async () => {
          try {
            await maintainClientSeals(this.ctx);
          } catch (e) {
            log.error({ err: (e as Error).message }, 'API client seal maintenance failed');
          }
        },
      },
      {
        name: 'orphan scan',
        everyMs: hooks.orphanScanIntervalMs ?? 3_600_000,
        atStart: true,
        run: async () => {
          try {
            for (const r of await findOrphans(this.ctx)) hooks.onOrphanScan?.(r);
          } catch (e) {
            log.error({ err: (e as Error).message }, 'orphan scan failed');
          }
        },
      },
    ];
  }

  // ---- API clients ----

  /** Grants as given (validated and normalised by the use case: unknown scopes or grants are refused). */
  addClient(
    name: string,
    grants: Record<string, readonly string[]>,
    actor: string,
  ): Promise<IssuedClientSecret> {
    return addClient(this.ctx, name, grants, actor);
  }

  /**
   * A client bound to a client certificate (PEM text) and no secret: it signs over mutual TLS.
   * Grants as for addClient. A certificate no CA in server.tls.clientCaFile issued is refused
   * (REQUEST_INVALID): the listener would never accept it. `clientCaConfigured` false: no client
   * CA is configured yet, so no listener accepts client certificates until one is.
   */
  async addCertificateClient(
    name: string,
    grants: Record<string, readonly string[]>,
    certificatePem: string,
    actor: string,
  ): Promise<ClientSummary & { clientCaConfigured: boolean }> {
    const issued = issuedByClientCa(this.config, certificatePem);
    if (issued === false) {
      throw new KeywardenError(
        'REQUEST_INVALID',
        'the certificate is not issued by a CA certificate in server.tls.clientCaFile: the listener would refuse it',
      );
    }
    const client = await addCertificateClient(this.ctx, name, grants, certificatePem, actor);
    return { ...client, clientCaConfigured: issued === true };
  }

  listClients(): Promise<CheckedClientSummary[]> {
    return listClients(this.ctx);
  }

  showClient(nameOrId: string): Promise<CheckedClientSummary> {
    return showClient(this.ctx, nameOrId);
  }

  removeClient(nameOrId: string, actor: string): Promise<ClientSummary> {
    return removeClient(this.ctx, nameOrId, actor);
  }

  rotateClientSecret(nameOrId: string, actor: string): Promise<IssuedClientSecret> {
    return rotateClientSecret(this.ctx, nameOrId, actor);
  }

  sealClients(req: SealClientsRequest, actor: string): Promise<SealClientsReport> {
    return sealClients(this.ctx, req, actor);
  }

  /** The client a presented secret belongs to (null: unknown, wrong or refused). */
  checkClientSecret(secret: string): Promise<AuthenticatedClient | null> {
    return checkClientSecret(this.ctx, secret);
  }

  /** The client bound to a presented certificate's SPKI SHA-256 (null: none, or refused). */
  checkClientCertificate(certSpkiSha256: string): Promise<AuthenticatedClient | null> {
    return checkClientCertificate(this.ctx, certSpkiSha256);
  }

  pollClients(previous: string | null): ReturnType<typeof pollClients> {
    return pollClients(this.ctx, previous);
  }

  // ---- audit ----

  auditTail(filter: AuditTailFilter): Promise<ChainedRecord[]> {
    return tailAudit(this.ctx, filter);
  }

  verifyAudit(opts: VerifyAuditOptions = {}): Promise<AuditVerifyReport> {
    return verifyAuditChain(this.ctx, opts);
  }

  checkpointAudit(opts: { force?: boolean } = {}): Promise<CheckpointResult> {
    return checkpointAudit(this.ctx, opts);
  }

  pruneAudit(before: Date, actor: string): Promise<PruneResult> {
    return pruneAudit(this.ctx, before, actor);
  }

  auditChainLength(): Promise<number> {
    return auditChainLength(this.ctx);
  }

  /** The token routes' sign activity counter (the composition root starts and stops it). */
  createSignActivity(): SignActivityAggregator {
    return new SignActivityAggregator(this.ctx);
  }

  /** The token routes' record of refused requests (rate-limited `access.denied`). */
  createDeniedRecorder(opts?: DeniedRecorderOptions): DeniedRecorder {
    return new DeniedRecorder(this.ctx, opts);
  }
}

import * as fs from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { KeywardenError } from '../policy/errors';
import { tokenTypeProblem } from '../policy/token-type';
import { EXIT } from './exit-codes';
import { globals, output, withRuntime } from './io';

function parseClaims(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InvalidArgumentError(`not valid JSON (${(e as Error).message})`);
  }
}

function readTokenArg(token: string): string {
  const t = token === '-' ? fs.readFileSync(0, 'utf8') : token;
  return t.trim();
}

/** `keywarden sign`: signs a JWT inside the backend, as an operator (no API client needed). */
export function signCommand(): Command {
  return new Command('sign')
    .description("sign a JWT with the scope's active key; iss is always the scope's issuer")
    .requiredOption('--scope <scope>', 'the scope whose key signs')
    .requiredOption('--claims <json>', 'claims as a JSON object; must include aud', parseClaims)
    .option('--ttl <seconds>', 'token lifetime (capped at the scope maxTokenTtl)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
      return n;
    })
    .option('--typ <typ>', 'JOSE typ header', 'JWT')
    .action(async (opts: { scope: string; claims: unknown; ttl?: number; typ: string }, cmd: Command) => {
      await withRuntime(cmd, async (kw) => {
        const t = await kw.sign(opts.scope, {
          claims: opts.claims,
          ttlSeconds: opts.ttl,
          typ: opts.typ,
        });
        output(cmd, t, () => t.token);
      });
    });
}

/** `keywarden verify`: complete validation (I6) against one scope; exit 0 valid, 1 invalid. */
export function verifyCommand(): Command {
  return new Command('verify')
    .description(
      'fully validate a JWT for a scope and audience; prints the claims (exit 0) or the reason (exit 1)',
    )
    .requiredOption('--scope <scope>', 'the scope the token must belong to')
    .requiredOption('--audience <aud>', 'the audience you are (required: there is no audience-less verify)')
    .option(
      '--typ <typ>',
      'the token type you accept, e.g. at+jwt: a token whose header typ differs is refused (typ_mismatch)',
      (v) => {
        const problem = tokenTypeProblem(v);
        if (problem) throw new InvalidArgumentError(problem);
        return v;
      },
    )
    .argument('<token>', "the JWT, or '-' to read it from stdin")
    .action(async (token: string, opts: { scope: string; audience: string; typ?: string }, cmd: Command) => {
      await withRuntime(cmd, async (kw) => {
        const jwt = readTokenArg(token);
        if (jwt.length === 0) throw new KeywardenError('REQUEST_INVALID', 'no token given');
        const r = await kw.verify(opts.scope, jwt, opts.audience, opts.typ);
        if (r.valid) {
          output(cmd, { valid: true, kid: r.kid, claims: r.claims }, () => JSON.stringify(r.claims, null, 2));
          return;
        }
        if (globals(cmd).json) output(cmd, { valid: false, reason: r.reason, message: r.message }, () => '');
        else process.stderr.write(`invalid token: ${r.reason}: ${r.message}\n`);
        process.exitCode = EXIT.NEGATIVE;
      });
    });
}

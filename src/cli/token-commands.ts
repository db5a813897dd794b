import * as fs from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { KeywardenError } from '../policy/errors';
import { tokenTypeProblem } from '../policy/token-type';
import { EXIT } from './exit-codes';
import { tokensSign, tokensVerify } from '../admin';
import { globals, output, runOperation } from './io';

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
      const t = await runOperation(cmd, tokensSign, {
        scope: opts.scope,
        claims: opts.claims,
        typ: opts.typ,
        ...(opts.ttl !== undefined ? { ttlSeconds: opts.ttl } : {}),
      });
      output(cmd, t, () => t.token);
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
      const jwt = readTokenArg(token);
      if (jwt.length === 0) throw new KeywardenError('REQUEST_INVALID', 'no token given');
      const r = await runOperation(cmd, tokensVerify, {
        scope: opts.scope,
        token: jwt,
        audience: opts.audience,
        ...(opts.typ !== undefined ? { typ: opts.typ } : {}),
      });
      if (r.valid) {
        output(cmd, r, () => JSON.stringify(r.claims, null, 2));
        return;
      }
      if (globals(cmd).json) output(cmd, r, () => '');
      else process.stderr.write(`invalid token: ${r.reason}: ${r.message}\n`);
      process.exitCode = EXIT.NEGATIVE;
    });
}

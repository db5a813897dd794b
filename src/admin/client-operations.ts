import { defineOperation } from './operation';
import { NO_INPUT, flag, list, object, text } from './schema';

const client = object({ client: text() }, ['client']);

export const clientsAdd = defineOperation({
  name: 'clients.add',
  summary: 'create an API client with grants per scope; its secret is in the answer, once',
  mutates: true,
  input: object(
    {
      name: text(),
      grants: { type: 'object', maxProperties: 1000, additionalProperties: list(text(64), 16) },
    },
    ['name', 'grants'],
  ),
  async run(kw, input: { name: string; grants: Record<string, string[]> }, actor) {
    const issued = await kw.addClient(input.name, input.grants, actor);
    return { ...issued.client, secret: issued.secret };
  },
});

export const clientsAddCertificate = defineOperation({
  name: 'clients.add-certificate',
  summary:
    "create an API client bound to a client certificate's public key (mutual TLS), with grants per scope; no secret",
  mutates: true,
  input: object(
    {
      name: text(),
      grants: { type: 'object', maxProperties: 1000, additionalProperties: list(text(64), 16) },
      certificatePem: text(65_536),
    },
    ['name', 'grants', 'certificatePem'],
  ),
  run(kw, input: { name: string; grants: Record<string, string[]>; certificatePem: string }, actor) {
    return kw.addCertificateClient(input.name, input.grants, input.certificatePem, actor);
  },
});

export const clientsList = defineOperation({
  name: 'clients.list',
  summary: 'API clients, their grants and whether an HSM key vouches for each (never secrets)',
  mutates: false,
  input: NO_INPUT,
  run: (kw) => kw.listClients(),
});

export const clientsShow = defineOperation({
  name: 'clients.show',
  summary: 'one API client by name or id',
  mutates: false,
  input: client,
  run: (kw, input: { client: string }) => kw.showClient(input.client),
});

export const clientsRemove = defineOperation({
  name: 'clients.remove',
  summary: 'remove an API client',
  mutates: true,
  input: client,
  async run(kw, input: { client: string }, actor) {
    return { removed: await kw.removeClient(input.client, actor) };
  },
});

export const clientsRotateSecret = defineOperation({
  name: 'clients.rotate-secret',
  summary: 'issue a new secret for a client (in the answer, once); the old one stops working',
  mutates: true,
  input: client,
  async run(kw, input: { client: string }, actor) {
    const issued = await kw.rotateClientSecret(input.client, actor);
    return { ...issued.client, secret: issued.secret };
  },
});

export const clientsSeal = defineOperation({
  name: 'clients.seal',
  summary: 'vouch for API client rows: seal them with the audit key',
  mutates: true,
  input: object({ clients: list(text()), all: flag, force: flag, dryRun: flag }, [
    'clients',
    'all',
    'force',
    'dryRun',
  ]),
  run(kw, input: { clients: string[]; all: boolean; force: boolean; dryRun: boolean }, actor) {
    return kw.sealClients(input, actor);
  },
});

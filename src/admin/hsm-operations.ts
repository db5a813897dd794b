import { hsmStatus } from '../lifecycle';
import { defineOperation } from './operation';
import { NO_INPUT } from './schema';

export const hsmStatusOperation = defineOperation({
  name: 'hsm.status',
  summary: "module, slots, tokens and free space, and the answering process's core-dump limit",
  mutates: false,
  input: NO_INPUT,
  run: (kw) => hsmStatus(kw.config),
});

export const hsmCheck = defineOperation({
  name: 'hsm.check',
  summary: 'every object on the configured tokens, with findings',
  mutates: false,
  input: NO_INPUT,
  run: (kw) => kw.hsmCheck(),
});

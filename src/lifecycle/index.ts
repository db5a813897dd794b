/**
 * The public surface of the use cases: the facade adapters (cli/, http/, scheduler/) work
 * through, and the types of what it answers. dependency-cruiser keeps adapters to this module
 * and policy/ (.dependency-cruiser.cjs).
 */
export {
  Keywarden,
  type DiscoveryDocument,
  type InitReport,
  type KeyListing,
  type ScopeDetails,
  type ScopePlan,
} from './keywarden';
export type { JwksAnswer } from './jwks-answer';
export type { Readiness, ReadinessCheck } from './readiness';
export { jwksCacheControl } from './build-jwks';
export { hsmStatus, type HsmCheckReport, type HsmFinding, type HsmStatusReport } from './hsm-check';
export {
  certificateSpkiSha256,
  hasGrant,
  type AuthenticatedClient,
  type ClientAuthMethod,
  type CheckedClientSummary,
  type ClientSummary,
  type IssuedClientSecret,
} from './clients';
export type { SealClientsReport, SealClientsRequest } from './seal-clients';
export type { ReconcileReport } from './reconcile-scope';
export type { ReconcileDueReason, ReconcileVerdict } from './reconcile-due';
export type { OrphanScanReport } from './find-orphans';
export type { ScopeOverviewRow } from './scope-overview';
export type { RevokeResult } from './revoke-key';
export type { KeyVerifyReport, RowTrust } from './verify-key-rows';
export type { IntegrityReport } from './key-integrity';
export type { ScanForLeaksResult } from './scan-for-leaks';
export type { SignedToken, SignRequest } from './sign-token';
export type { PeriodicJob } from './ports';
export type { DeniedRequest, DeniedRecorder, SignActivityAggregator } from '../audit/activity';
export type { AuditVerifyReport } from '../audit/verify';
export type { ChainedRecord } from '../audit/chain';
export type { ScanProgress } from '../scan';
export type { ValidationResult } from '@keywarden/verify';

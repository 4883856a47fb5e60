export {
  ERROR_CODES,
  DomainError,
  isDomainError,
  dataLoss,
  type DomainErrorOptions,
  type ErrorCode,
  aborted,
  alreadyExists,
  cancelled,
  deadlineExceeded,
  failedPrecondition,
  internal,
  invalidArgument,
  notFound,
  outOfRange,
  permissionDenied,
  resourceExhausted,
  unauthenticated,
  unavailable,
  unimplemented,
} from './errors.js';
export { HttpError, httpErrorOf, httpStatusOf, sendHttpError } from './http-errors.js';
export { errorCodeOf, grpcStatusOf } from './status.js';
export { KIT_ACCESS, accessTableProblems, type AccessRule, type AccessTable, type TenantRule } from './access.js';
export {
  SCOPES,
  bearerToken,
  hasScope,
  requireScope,
  type Authenticator,
  type HandlerScope,
  type Principal,
  type Scope,
} from './auth.js';
export { AbortListeners, type CallContext, type Cancellation } from './call-context.js';
export {
  bidiStreaming,
  bidiStreamingCall,
  clientStreaming,
  handlerKind,
  handlerScope,
  serverStreaming,
  unary,
  type HandlerKind,
  type HandlerOptions,
} from './handlers.js';
export {
  ConfigError,
  HelpRequested,
  fields,
  formatDuration,
  loadConfig,
  loadConfigOrExit,
  parseDuration,
  renderHelp,
  type ConfigOf,
  type ConfigSchema,
  type ConfigSource,
  type Field,
  type OptionalKey,
  type FieldType,
} from './config.js';
export type { HealthStatus } from './health.js';
export {
  DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH,
  DEFAULT_SHUTDOWN_GRACE_MS,
  REPEATED_SIGNAL_WINDOW_MS,
  createService,
  type QuantaService,
  type ServiceOptions,
} from './service.js';
export { DEFAULT_FLOW_CONTROL_WINDOW, widenFlowControlWindows } from './flow-control.js';
export { channelCredentials, type ClientTlsOptions, type ServerTlsOptions } from './tls.js';
export {
  createClient,
  serviceTokenSource,
  type ClientConstructor,
  type ClientOptions,
  type TokenSource,
} from './client.js';
export {
  checkServiceConfig,
  clientTlsFields,
  clientTlsFromConfig,
  serviceConfigFields,
  serviceOptionsFromConfig,
  type ClientTlsConfig,
  type ServiceConfig,
} from './service-config.js';
export { audited, createAuditor, errorCodeName, type AuditEntry, type Auditor } from './audit.js';
export {
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  answerClientErrors,
  httpServerLimits,
  listenHttp,
  type HttpLimits,
} from './http-limits.js';

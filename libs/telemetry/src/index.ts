export { initTelemetry, type Telemetry, type TelemetryOptions } from './telemetry.js';
export { createServerInterceptor, type InterceptorOptions } from './server-interceptor.js';
export { globalTracerLookup } from './global-tracer.js';
export { createClientInterceptor } from './client-interceptor.js';
export { setHttpRoute, traceHttpRequests, type HttpTracingOptions, type RequestListener } from './http-server.js';
export { createLogger, currentTraceId, type LoggerOptions } from './logger.js';
export {
  ATTR_RPC_GRPC_STATUS_CODE,
  ATTR_RPC_METHOD,
  ATTR_RPC_SERVICE,
  ATTR_RPC_SYSTEM,
  INSTRUMENTATION_SCOPE,
} from './rpc-attributes.js';

import { createLogger } from '@quanta/telemetry';

/** Used by handlers outside a service and by services given neither a logger nor telemetry. */
export const defaultLogger = createLogger('service-kit');

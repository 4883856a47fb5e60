export { SERVICES, availableServices, type ServiceSpec } from './services.js';
export { waitHealthy } from './wait-healthy.js';
export {
  devCertFiles,
  devChannelCredentials,
  devTlsEnvironment,
  ensureDevCertificates,
  type DevCertFiles,
} from './tls.js';

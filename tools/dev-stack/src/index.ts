export { SERVICES, availableServices, type ServiceSpec } from './services.js';
export { waitHealthy } from './wait-healthy.js';

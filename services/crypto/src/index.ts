// The crypto service as a library: tests, the dev stack and benchmarks start it in-process.
export { cryptoConfig, cryptoConfigSchema, loadCryptoConfig, type CryptoConfig } from './config.js';
export { startCryptoServer, type CryptoServer, type CryptoServerOptions } from './server/crypto-server.js';
export { ADMIN_SUBJECT, ADMIN_TENANT } from './server/admin-token.js';
export { CRYPTO_ACCESS } from './server/access.js';

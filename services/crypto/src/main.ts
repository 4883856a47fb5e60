import { initTelemetry } from '@quanta/telemetry';
import { loadCryptoConfigOrExit } from './config.js';
import { startCryptoServer } from './server/crypto-server.js';

const config = loadCryptoConfigOrExit();
const telemetry = initTelemetry({ serviceName: 'crypto', serviceVersion: '0.1.0' });
const server = await startCryptoServer(config, { telemetry });
server.service.handleSignals();

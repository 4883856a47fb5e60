import type { Command } from 'commander';
import { registerAuditCommand } from './audit.js';
import { registerBatchCommand } from './batch.js';
import { registerCertsCommand } from './certs.js';
import { registerCryptoDataCommands } from './crypto-data.js';
import { registerDeployCommand, registerDeploymentsCommand } from './deployments.js';
import { registerDriftCommands } from './drift.js';
import { registerInferCommand } from './infer.js';
import { registerKeysCommand } from './keys.js';
import { registerModelsCommand } from './models.js';
import { registerModelsCompressCommands } from './models-compress.js';
import { registerModelsRewrapCommand } from './models-rewrap.js';
import { registerMonitoringCommands } from './monitoring.js';
import { registerPingCommand } from './ping.js';
import { registerTokensCommand } from './tokens.js';
import { registerVersionCommand } from './version.js';

/** Every command group of the CLI; each service adds its own register function here. */
const registrars: ReadonlyArray<(program: Command) => void> = [
  registerVersionCommand,
  registerPingCommand,
  registerKeysCommand,
  registerCryptoDataCommands,
  registerTokensCommand,
  registerModelsCommand,
  registerModelsCompressCommands,
  registerModelsRewrapCommand,
  registerDeployCommand,
  registerDeploymentsCommand,
  registerMonitoringCommands,
  registerDriftCommands,
  registerCertsCommand,
  registerAuditCommand,
  registerInferCommand,
  registerBatchCommand,
];

export function registerCommands(program: Command): void {
  for (const register of registrars) register(program);
}

import type { Command } from 'commander';
import { registerPingCommand } from './ping.js';
import { registerVersionCommand } from './version.js';

/** Every command group of the CLI; each service adds its own register function here. */
const registrars: ReadonlyArray<(program: Command) => void> = [registerVersionCommand, registerPingCommand];

export function registerCommands(program: Command): void {
  for (const register of registrars) register(program);
}

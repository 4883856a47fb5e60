import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { action } from '../program.js';
import { parseSeconds, withCrypto } from './keys.js';

export function registerTokensCommand(program: Command): void {
  const tokens = program.command('tokens').description('access tokens signed by the crypto service');
  tokens
    .command('issue')
    .description('issue an access token (needs the admin token); prints the token')
    .requiredOption('--tenant <tenant>', 'the tenant the token acts for')
    .requiredOption('--scopes <a,b,...>', 'models:read, models:write, infer, keys:use, keys:admin, monitoring:read, monitoring:write, admin')
    .option('--subject <name>', 'who the token is for', 'cli-user')
    .option('--ttl <duration>', 'lifetime, e.g. 3600, 15m, 1h, 30d', '1h')
    .action(
      action(async ({ settings, out }, opts: { tenant: string; scopes: string; subject: string; ttl: string }) => {
        const scopes = opts.scopes.split(',').map((s) => s.trim()).filter((s) => s !== '');
        if (scopes.length === 0) throw new CliError('--scopes lists no scope', 2);
        const ttlSeconds = parseSeconds(opts.ttl, '--ttl');
        const reply = await withCrypto(settings, (rpc) =>
          rpc('issueToken', { tenant: opts.tenant, subject: opts.subject, scopes, ttlSeconds: BigInt(ttlSeconds) }),
        );
        out.result(
          { token: reply.token, tenant: opts.tenant, subject: opts.subject, scopes, expireTime: reply.expireTime?.toISOString(), keyId: reply.keyId },
          () => reply.token,
        );
        out.info(`token for tenant "${opts.tenant}" (${scopes.join(' ')}) expires ${reply.expireTime?.toISOString() ?? '?'}`);
      }),
    );
}

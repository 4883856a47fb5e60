import type { Command } from 'commander';
import type { crypto } from '@quanta/contracts';
import { CliError } from '../errors.js';
import { action } from '../action.js';
import { parseSeconds, withCrypto } from './keys.js';

export function registerTokensCommand(program: Command): void {
  const tokens = program.command('tokens').description('access tokens signed by the crypto service');
  tokens
    .command('issue')
    .description('issue an access token (needs the admin token); prints the token')
    .requiredOption('--tenant <tenant>', 'the tenant the token acts for')
    .requiredOption(
      '--scopes <a,b,...>',
      'models:read, models:write, infer, keys:use, keys:admin, monitoring:read, alerts:write, monitoring:write, admin',
    )
    .option('--subject <name>', 'who the token is for', 'cli-user')
    .option('--ttl <duration>', 'lifetime, e.g. 3600, 15m, 1h, 30d', '1h')
    .action(
      action(async ({ settings, out }, opts: { tenant: string; scopes: string; subject: string; ttl: string }) => {
        const scopes = opts.scopes
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '');
        if (scopes.length === 0) throw new CliError('--scopes lists no scope', 2);
        const ttlSeconds = parseSeconds(opts.ttl, '--ttl');
        const reply = await withCrypto(settings, (rpc) =>
          rpc('issueToken', { tenant: opts.tenant, subject: opts.subject, scopes, ttlSeconds: BigInt(ttlSeconds) }),
        );
        out.result(
          {
            token: reply.token,
            tenant: opts.tenant,
            subject: opts.subject,
            scopes,
            expireTime: reply.expireTime?.toISOString(),
            keyId: reply.keyId,
          },
          () => reply.token,
        );
        out.info(
          `token for tenant "${opts.tenant}" (${scopes.join(' ')}) expires ${reply.expireTime?.toISOString() ?? '?'}`,
        );
      }),
    );

  tokens
    .command('revoke')
    .description(
      'revoke a token, a token by its id, or every token of a subject issued before a time (needs the admin token); ' +
        'every service refuses it within seconds',
    )
    .argument('[token]', 'the token itself')
    .option('--jti <id>', 'the token id (claim "jti") instead of the token')
    .option('--subject <name>', 'every token of this subject (with --tenant) issued before --before')
    .option('--tenant <tenant>', 'the tenant of --subject')
    .option('--before <time>', 'with --subject: an ISO 8601 time, or a duration ago (e.g. 10m); default now')
    .action(
      action(
        async (
          { settings, out },
          token: string | undefined,
          opts: { jti?: string; subject?: string; tenant?: string; before?: string },
        ) => {
          const given = [token !== undefined, opts.jti !== undefined, opts.subject !== undefined].filter(
            Boolean,
          ).length;
          if (given !== 1) throw new CliError('give exactly one of TOKEN, --jti ID or --subject NAME', 2);
          if (opts.subject !== undefined && opts.tenant === undefined)
            throw new CliError('--subject needs --tenant', 2);
          if (opts.before !== undefined && opts.subject === undefined)
            throw new CliError('--before goes with --subject', 2);
          const request: crypto.RevokeTokenRequest =
            token !== undefined
              ? { target: { $case: 'token', value: token }, tenant: '', issuedBefore: undefined }
              : opts.jti !== undefined
                ? { target: { $case: 'jti', value: opts.jti }, tenant: '', issuedBefore: undefined }
                : {
                    target: { $case: 'subject', value: opts.subject ?? '' },
                    tenant: opts.tenant ?? '',
                    issuedBefore: opts.before === undefined ? undefined : parseBefore(opts.before),
                  };
          const reply = await withCrypto(settings, (rpc) => rpc('revokeToken', request));
          const r = reply.revocation;
          const what =
            token !== undefined || opts.jti !== undefined
              ? `token ${r?.jti ?? ''}`
              : `every token of "${opts.subject ?? ''}" in tenant "${opts.tenant ?? ''}" ` +
                `issued before ${r?.issuedBefore?.toISOString() ?? '?'}`;
          out.result(
            {
              jti: r?.jti ?? '',
              subject: opts.subject ?? '',
              tenant: opts.tenant ?? '',
              issuedBefore: r?.issuedBefore?.toISOString(),
              expireTime: r?.expireTime?.toISOString(),
              revokeTime: r?.revokeTime?.toISOString(),
            },
            () => `revoked ${what} (entry kept until ${r?.expireTime?.toISOString() ?? '?'})`,
          );
        },
      ),
    );

  tokens
    .command('rotate-signing-key')
    .description(
      'sign new tokens with a new key (needs the admin token); tokens signed with the old key work until they expire',
    )
    .action(
      action(async ({ settings, out }) => {
        const reply = await withCrypto(settings, (rpc) => rpc('rotateSigningKey', {}));
        out.result(
          {
            keyId: reply.keyId,
            previousKeyId: reply.previousKeyId,
            previousKeyRetireTime: reply.previousKeyRetireTime?.toISOString(),
          },
          () =>
            `new signing key ${reply.keyId}; ${reply.previousKeyId} verifies until ` +
            `${reply.previousKeyRetireTime?.toISOString() ?? '?'}, then leaves the JWKS`,
        );
      }),
    );
}

/** `--before`: an ISO 8601 time, or a duration ago. */
function parseBefore(text: string): Date {
  if (/^\d+(s|m|h|d)?$/.test(text.trim())) return new Date(Date.now() - parseSeconds(text, '--before') * 1000);
  const ms = Date.parse(text);
  if (Number.isNaN(ms))
    throw new CliError(`--before "${text}" is neither an ISO 8601 time nor a duration (like 10m)`, 2);
  return new Date(ms);
}

import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { TokenIssuer } from '@quanta/auth';
import type { Authenticator } from '@quanta/service-kit';
import type { Logger } from 'pino';

export const ADMIN_TENANT = 'default';
export const ADMIN_SUBJECT = 'admin';

async function stillValid(path: string, verify: Authenticator): Promise<boolean> {
  let token: string;
  try {
    token = (await readFile(path, 'utf8')).trim();
  } catch {
    return false;
  }
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  try {
    await verify(metadata);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure `$QUANTA_HOME/admin.token` holds a valid admin token (file mode 0600): on first start,
 * and again when the old one expired or was signed by keys this store no longer has.
 */
export async function ensureAdminToken(options: {
  home: string;
  issuer: TokenIssuer;
  verify: Authenticator;
  ttlSeconds: number;
  logger: Logger;
}): Promise<string> {
  const path = join(options.home, 'admin.token');
  if (await stillValid(path, options.verify)) return path;
  const issued = await options.issuer.mint({
    tenant: ADMIN_TENANT,
    subject: ADMIN_SUBJECT,
    scopes: ['admin'],
    ttlSeconds: options.ttlSeconds,
  });
  await writeFile(path, `${issued.token}\n`, { mode: 0o600 });
  await chmod(path, 0o600); // an older file keeps its mode on overwrite
  options.logger.warn(
    { path, tenant: ADMIN_TENANT, expires: issued.expiresAt.toISOString() },
    `admin token written to ${path} (tenant "${ADMIN_TENANT}", scope admin): keep it secret`,
  );
  return path;
}

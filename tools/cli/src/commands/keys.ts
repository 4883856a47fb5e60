import { readFile } from 'node:fs/promises';
import { crypto as pb, unaryCaller, type RequestOf, type ResponseOf, type UnaryMethod } from '@quanta/contracts';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { connect } from '../grpc.js';
import { table } from '../output.js';
import { action } from '../action.js';
import type { Settings } from '../settings.js';
import { checkRegistryKeyFloor } from './models-rewrap.js';

/** Key types by the names people type, as the engine names them. */
export const KEY_TYPE_NAMES: Readonly<Record<string, pb.KeyType>> = {
  'aes256-gcm': pb.KeyType.KEY_TYPE_AES256_GCM,
  'chacha20-poly1305': pb.KeyType.KEY_TYPE_CHACHA20_POLY1305,
  fernet: pb.KeyType.KEY_TYPE_FERNET,
  'hmac-sha256': pb.KeyType.KEY_TYPE_HMAC_SHA256,
  ed25519: pb.KeyType.KEY_TYPE_ED25519,
};

export function keyTypeName(type: pb.KeyType): string {
  return Object.entries(KEY_TYPE_NAMES).find(([, t]) => t === type)?.[0] ?? pb.keyTypeToJSON(type);
}

function keyTypeOf(name: string): pb.KeyType {
  const type = KEY_TYPE_NAMES[name];
  if (type === undefined)
    throw new CliError(`unknown key type "${name}"; use one of ${Object.keys(KEY_TYPE_NAMES).join(', ')}`, 2);
  return type;
}

type Definition = typeof pb.CryptoServiceService;

/** A promise-returning caller of CryptoService's unary RPCs (the CLI's token rides on every call). */
export interface CryptoRpc {
  <K extends UnaryMethod<Definition>>(method: K, request: RequestOf<Definition, K>): Promise<ResponseOf<Definition, K>>;
  readonly client: pb.CryptoServiceClient;
  close(): void;
}

export function cryptoRpc(settings: Settings): CryptoRpc {
  const client = connect(pb.CryptoServiceClient, settings, 'crypto');
  const call = unaryCaller(client, pb.CryptoServiceService, { deadlineMs: 60_000 });
  const rpc = <K extends UnaryMethod<Definition>>(method: K, request: RequestOf<Definition, K>) =>
    call(method, request);
  return Object.assign(rpc, { client, close: () => client.close() });
}

/** Runs `fn` with a connected caller and always closes the channel. */
export async function withCrypto<T>(settings: Settings, fn: (rpc: CryptoRpc) => Promise<T>): Promise<T> {
  const rpc = cryptoRpc(settings);
  try {
    return await fn(rpc);
  } finally {
    rpc.close();
  }
}

/** `30d`, `12h`, `90m`, `45s` or plain seconds → seconds. */
export function parseSeconds(text: string, what: string): number {
  const match = /^(\d+)(s|m|h|d)?$/.exec(text.trim());
  if (match === null) throw new CliError(`${what} "${text}" is not a duration (like 3600, 90s, 15m, 1h, 30d)`, 2);
  const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[(match[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

function parseWhole(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`${what} must be a whole number, got "${text}"`, 2);
  return Number(text);
}

function parseBool(text: string, what: string): boolean {
  if (['true', 'yes', 'on', '1'].includes(text)) return true;
  if (['false', 'no', 'off', '0'].includes(text)) return false;
  throw new CliError(`${what} must be true or false, got "${text}"`, 2);
}

const keyJson = (key: pb.Key | undefined): unknown => (key === undefined ? null : pb.Key.toJSON(key));

function describeKey(key: pb.Key | undefined): string {
  if (key === undefined) return '';
  const c = key.config;
  const lines: [string, string][] = [
    ['name', key.name],
    ['tenant', key.tenant],
    ['type', keyTypeName(key.type)],
    ['latest version', String(key.latestVersion)],
    ['min decryption version', String(c?.minDecryptionVersion ?? 1)],
    ['min encryption version', String(c?.minEncryptionVersion ?? 0)],
    ['exportable', String(c?.exportable ?? false)],
    ['deletion allowed', String(c?.deletionAllowed ?? false)],
    [
      'auto-rotate',
      c === undefined || c.autoRotatePeriodSeconds === 0n ? 'never' : `every ${c.autoRotatePeriodSeconds}s`,
    ],
    ['created', key.createTime?.toISOString() ?? ''],
    ['updated', key.updateTime?.toISOString() ?? ''],
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  const versions = key.versions.map((v) => {
    const publicKey = v.publicKey.length > 0 ? `  public key ${v.publicKey.toString('base64url')}` : '';
    return `  v${v.version}  ${v.createTime?.toISOString() ?? ''}${publicKey}`;
  });
  return [...lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`), 'versions:', ...versions].join('\n');
}

interface ConfigFlags {
  exportable?: boolean | string;
  deletionAllowed?: boolean | string;
  autoRotate?: string;
  minDecryptionVersion?: string;
  minEncryptionVersion?: string;
}

function configOf(flags: ConfigFlags): pb.KeyConfigUpdate {
  const update: pb.KeyConfigUpdate = {};
  if (flags.exportable !== undefined)
    update.exportable =
      typeof flags.exportable === 'boolean' ? flags.exportable : parseBool(flags.exportable, '--exportable');
  if (flags.deletionAllowed !== undefined) {
    update.deletionAllowed =
      typeof flags.deletionAllowed === 'boolean'
        ? flags.deletionAllowed
        : parseBool(flags.deletionAllowed, '--deletion-allowed');
  }
  if (flags.autoRotate !== undefined)
    update.autoRotatePeriodSeconds = BigInt(
      flags.autoRotate === 'never' ? 0 : parseSeconds(flags.autoRotate, '--auto-rotate'),
    );
  if (flags.minDecryptionVersion !== undefined)
    update.minDecryptionVersion = parseWhole(flags.minDecryptionVersion, '--min-decryption-version');
  if (flags.minEncryptionVersion !== undefined)
    update.minEncryptionVersion = parseWhole(flags.minEncryptionVersion, '--min-encryption-version');
  return update;
}

async function readAllStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function registerKeysCommand(program: Command): void {
  const keys = program
    .command('keys')
    .description('manage encryption and signing keys in the crypto service (scope keys:admin)');
  const types = Object.keys(KEY_TYPE_NAMES).join('|');

  keys
    .command('create')
    .description('create a key (version 1)')
    .argument('<name>', 'key name, unique in your tenant')
    .option('--type <type>', types, 'aes256-gcm')
    .option('--exportable', 'allow `keys export` of the material (cannot be undone)')
    .option('--deletion-allowed', 'allow `keys delete`')
    .option('--auto-rotate <period>', 'rotate automatically after this long, e.g. 30d')
    .action(
      action(async ({ settings, out }, name: string, opts: ConfigFlags & { type: string }) => {
        const reply = await withCrypto(settings, (rpc) =>
          rpc('createKey', { name, type: keyTypeOf(opts.type), config: configOf(opts) }),
        );
        out.result(keyJson(reply.key), () => `created key "${name}" (${opts.type}, version 1)`);
      }),
    );

  keys
    .command('import')
    .description('import key material as version 1 of a new key: a Fernet key as Python writes it, or raw key bytes')
    .argument('<name>', 'key name')
    .option('--type <type>', types, 'fernet')
    .option('--file <path>', 'read the material from this file instead of stdin')
    .option('--exportable', 'allow `keys export` of the material')
    .option('--deletion-allowed', 'allow `keys delete`')
    .action(
      action(async ({ settings, out }, name: string, opts: ConfigFlags & { type: string; file?: string }) => {
        const type = keyTypeOf(opts.type);
        const raw = opts.file === undefined ? await readAllStdin() : await readFile(opts.file);
        // A Fernet key is text: a trailing newline from `echo` or a file is not part of it.
        const material = type === pb.KeyType.KEY_TYPE_FERNET ? Buffer.from(raw.toString('utf8').trim()) : raw;
        const reply = await withCrypto(settings, (rpc) =>
          rpc('importKey', { name, type, material, config: configOf(opts) }),
        );
        out.result(keyJson(reply.key), () => `imported key "${name}" (${opts.type}, version 1)`);
      }),
    );

  keys
    .command('list')
    .description("list your tenant's keys")
    .option('--page-size <n>', 'keys per request', '100')
    .action(
      action(async ({ settings, out }, opts: { pageSize: string }) => {
        const pageSize = parseWhole(opts.pageSize, '--page-size');
        const all = await withCrypto(settings, async (rpc) => {
          const found: pb.Key[] = [];
          let pageToken = '';
          do {
            const page = await rpc('listKeys', { pageSize, pageToken });
            found.push(...page.keys);
            pageToken = page.nextPageToken;
          } while (pageToken !== '');
          return found;
        });
        out.result(
          all.map((k) => pb.Key.toJSON(k)),
          () =>
            all.length === 0
              ? 'no keys'
              : table(
                  ['NAME', 'TYPE', 'VERSION', 'MIN-DECRYPT', 'EXPORTABLE', 'DELETABLE', 'UPDATED'],
                  all.map((k) => [
                    k.name,
                    keyTypeName(k.type),
                    String(k.latestVersion),
                    String(k.config?.minDecryptionVersion ?? 1),
                    String(k.config?.exportable ?? false),
                    String(k.config?.deletionAllowed ?? false),
                    k.updateTime?.toISOString() ?? '',
                  ]),
                ),
        );
      }),
    );

  keys
    .command('show')
    .description("a key's metadata and versions (never its material)")
    .argument('<name>', 'key name')
    .action(
      action(async ({ settings, out }, name: string) => {
        const reply = await withCrypto(settings, (rpc) => rpc('getKey', { name }));
        out.result(keyJson(reply.key), () => describeKey(reply.key));
      }),
    );

  keys
    .command('rotate')
    .description('add a new version and encrypt with it from now on; old versions still decrypt')
    .argument('<name>', 'key name')
    .action(
      action(async ({ settings, out }, name: string) => {
        const reply = await withCrypto(settings, (rpc) => rpc('rotateKey', { name }));
        out.result(
          keyJson(reply.key),
          () => `rotated key "${name}": version ${reply.key?.latestVersion ?? '?'} is now primary`,
        );
      }),
    );

  keys
    .command('config')
    .description("change a key's configuration (only the options given change)")
    .argument('<name>', 'key name')
    .option('--min-decryption-version <n>', 'versions below this can no longer decrypt')
    .option('--min-encryption-version <n>', 'lowest version that Sign may be asked to use (0 = no floor)')
    .option('--exportable <bool>', 'true to allow export (cannot be turned off)')
    .option('--deletion-allowed <bool>', 'true or false')
    .option('--auto-rotate <period>', 'e.g. 30d, or never')
    .option(
      '--force',
      'raise --min-decryption-version without asking the model registry ' +
        'whether stored models still need the older versions',
    )
    .action(
      action(async ({ settings, out }, name: string, opts: ConfigFlags & { force?: boolean }) => {
        const config = configOf(opts);
        if (Object.keys(config).length === 0)
          throw new CliError('nothing to change: give at least one option (see quanta keys config --help)', 2);
        if (config.minDecryptionVersion !== undefined && config.minDecryptionVersion > 1) {
          await checkRegistryKeyFloor(settings, name, config.minDecryptionVersion, opts.force === true);
        }
        const reply = await withCrypto(settings, (rpc) => rpc('updateKeyConfig', { name, config }));
        out.result(keyJson(reply.key), () => describeKey(reply.key));
      }),
    );

  keys
    .command('delete')
    .description(
      'delete a key and every version of it (only when deletion is allowed); its ciphertexts become unreadable',
    )
    .argument('<name>', 'key name')
    .action(
      action(async ({ settings, out }, name: string) => {
        await withCrypto(settings, (rpc) => rpc('deleteKey', { name }));
        out.result({ deleted: name }, () => `deleted key "${name}"`);
      }),
    );
}

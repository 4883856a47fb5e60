import type { crypto as pb } from '@quanta/contracts';
import { hasScope, invalidArgument, unary } from '@quanta/service-kit';
import type { KeyManager } from '../core/index.js';
import { actorOf } from './context.js';
import { auditEventToWire, configPatchFromWire, keyToWire, keyTypeFromWire } from './convert.js';

type KeyHandlers = Pick<
  pb.CryptoServiceServer,
  | 'createKey'
  | 'importKey'
  | 'getKey'
  | 'listKeys'
  | 'rotateKey'
  | 'updateKeyConfig'
  | 'deleteKey'
  | 'exportKey'
  | 'listAuditEvents'
>;

/** `0` means the default page; more than 1000 is refused rather than silently cut. */
export function pageSizeOf(pageSize: number, rpc: string): number {
  if (pageSize === 0) return 100;
  if (pageSize > 1000) throw invalidArgument(`${rpc}: page_size ${pageSize} is over the maximum of 1000`);
  return pageSize;
}

/** Key management: every RPC needs `keys:admin` and acts within the token's tenant. */
export function createKeyHandlers(keys: KeyManager): KeyHandlers {
  return {
    createKey: unary<pb.CreateKeyRequest, pb.CreateKeyResponse>(async (req, ctx) => ({
      key: keyToWire(
        await keys.createKey(actorOf(ctx), req.name, keyTypeFromWire(req.type), configPatchFromWire(req.config)),
      ),
    })),

    importKey: unary<pb.ImportKeyRequest, pb.ImportKeyResponse>(async (req, ctx) => {
      if (req.material.length === 0) throw invalidArgument('ImportKey: material is empty');
      const type = keyTypeFromWire(req.type);
      // A Fernet key travels as its url-safe base64 text, exactly as Python writes it.
      const material = type === 'fernet' ? req.material.toString('utf8').trim() : req.material;
      return {
        key: keyToWire(await keys.importKey(actorOf(ctx), req.name, type, material, configPatchFromWire(req.config))),
      };
    }),

    getKey: unary<pb.GetKeyRequest, pb.GetKeyResponse>(async (req, ctx) => ({
      key: keyToWire(await keys.getKey(actorOf(ctx), req.name)),
    })),

    listKeys: unary<pb.ListKeysRequest, pb.ListKeysResponse>(async (req, ctx) => {
      const page = await keys.listKeys(actorOf(ctx), {
        pageSize: pageSizeOf(req.pageSize, 'ListKeys'),
        ...(req.pageToken === '' ? {} : { pageToken: req.pageToken }),
      });
      return { keys: page.keys.map(keyToWire), nextPageToken: page.nextPageToken };
    }),

    rotateKey: unary<pb.RotateKeyRequest, pb.RotateKeyResponse>(async (req, ctx) => ({
      key: keyToWire(await keys.rotateKey(actorOf(ctx), req.name)),
    })),

    updateKeyConfig: unary<pb.UpdateKeyConfigRequest, pb.UpdateKeyConfigResponse>(async (req, ctx) => {
      const patch = configPatchFromWire(req.config);
      if (Object.keys(patch).length === 0) throw invalidArgument('UpdateKeyConfig: config sets no field to change');
      return { key: keyToWire(await keys.updateKeyConfig(actorOf(ctx), req.name, patch)) };
    }),

    deleteKey: unary<pb.DeleteKeyRequest, pb.DeleteKeyResponse>(async (req, ctx) => {
      await keys.deleteKey(actorOf(ctx), req.name);
      return {};
    }),

    exportKey: unary<pb.ExportKeyRequest, pb.ExportKeyResponse>(async (req, ctx) => {
      const exported = await keys.exportKey(actorOf(ctx), req.name, req.version === 0 ? undefined : req.version);
      return { name: req.name, version: exported.version, material: exported.material };
    }),

    listAuditEvents: unary<pb.ListAuditEventsRequest, pb.ListAuditEventsResponse>(async (req, ctx) => {
      const page = await keys.listAudit(actorOf(ctx), {
        ...(req.keyName === '' ? {} : { keyName: req.keyName }),
        allTenants: ctx.principal !== undefined && hasScope(ctx.principal, 'admin'),
        pageSize: pageSizeOf(req.pageSize, 'ListAuditEvents'),
        ...(req.pageToken === '' ? {} : { pageToken: req.pageToken }),
      });
      return { events: page.events.map(auditEventToWire), nextPageToken: page.nextPageToken };
    }),
  };
}

import type { registry as pb } from '@quanta/contracts';
import { audited, cancelled, clientStreaming, serverStreaming, unary } from '@quanta/service-kit';
import { createModel, deleteModel, getModel, listModels, updateModel } from '../core/models-repo.js';
import { checkName, checkTags, parseRef } from '../core/names.js';
import { pageSize } from '../core/page-token.js';
import { deleteAlias, setAlias } from '../core/aliases-repo.js';
import { getVersion, listVersions, resolveVersion, updateVersion } from '../core/versions-repo.js';
import { recordDeploymentChanges } from '../core/change-feed.js';
import { refreshFollowers } from '../core/deployments-repo.js';
import { tenantOf } from './context.js';
import type { RegistryDeps } from './deps.js';
import { compressVersion } from '../compress/compress-version.js';
import { downloadVersion } from './download.js';
import { uploadVersion } from './upload.js';

type ModelHandlers = Pick<
  pb.RegistryServiceServer,
  | 'createModel'
  | 'getModel'
  | 'listModels'
  | 'updateModel'
  | 'deleteModel'
  | 'uploadVersion'
  | 'getVersion'
  | 'listVersions'
  | 'updateVersion'
  | 'downloadVersion'
  | 'compressVersion'
  | 'setAlias'
  | 'deleteAlias'
>;

export function createModelHandlers(deps: RegistryDeps): ModelHandlers {
  const { store, audit } = deps;
  return {
    createModel: unary<pb.CreateModelRequest, pb.CreateModelResponse>(
      audited(
        audit,
        (req) => req.name,
        async (req, ctx) => {
          const key = { tenant: tenantOf(ctx), name: checkName('model', req.name) };
          const tags = checkTags(req.tags, 'tags');
          const model = await store.transaction(async (tx) => {
            await createModel(tx, key, { description: req.description, tags }, deps.now());
            return getModel(tx, key);
          });
          return { model };
        },
      ),
    ),

    getModel: unary<pb.GetModelRequest, pb.GetModelResponse>(async (req, ctx) => ({
      model: await getModel(store, { tenant: tenantOf(ctx), name: checkName('model', req.name) }),
    })),

    listModels: unary<pb.ListModelsRequest, pb.ListModelsResponse>(async (req, ctx) =>
      listModels(
        store,
        tenantOf(ctx),
        { namePrefix: req.namePrefix, tags: req.tags },
        { size: pageSize(req.pageSize), token: req.pageToken },
      ),
    ),

    updateModel: unary<pb.UpdateModelRequest, pb.UpdateModelResponse>(
      audited(
        audit,
        (req) => req.name,
        async (req, ctx) => {
          const key = { tenant: tenantOf(ctx), name: checkName('model', req.name) };
          const setTags = checkTags(req.setTags, 'set_tags');
          const model = await store.transaction(async (tx) => {
            await updateModel(
              tx,
              key,
              { description: req.description, setTags, removeTags: req.removeTags },
              deps.now(),
            );
            return getModel(tx, key);
          });
          return { model };
        },
      ),
    ),

    deleteModel: unary<pb.DeleteModelRequest, pb.DeleteModelResponse>(
      audited(
        audit,
        (req) => req.name,
        async (req, ctx) => {
          const key = { tenant: tenantOf(ctx), name: checkName('model', req.name) };
          const orphaned = await store.transaction((tx) => deleteModel(tx, key));
          // After commit: a crash in between leaves files the start-up sweep removes.
          for (const sha256 of orphaned) await deps.blobs.delete({ tenant: key.tenant, sha256 });
          return {};
        },
      ),
    ),

    uploadVersion: clientStreaming<pb.UploadVersionRequest, pb.UploadVersionResponse>(async (requests, ctx) => {
      // The model is named in the stream's header: the failure entry names it when one arrived.
      let model = '';
      const named = (async function* (): AsyncGenerator<pb.UploadVersionRequest, void, undefined> {
        for await (const request of requests) {
          if (model === '' && request.part?.$case === 'header') model = request.part.value.model;
          yield request;
        }
      })();
      let version: pb.ModelVersion;
      try {
        version = await uploadVersion(deps, named, ctx);
      } catch (error: unknown) {
        await audit.record(ctx, model, error);
        throw error;
      }
      await audit.record(ctx, `${version.model}:${version.version}`, undefined);
      return { version };
    }),

    getVersion: unary<pb.GetVersionRequest, pb.GetVersionResponse>(async (req, ctx) => {
      const tenant = tenantOf(ctx);
      const ref = parseRef(req.ref);
      const number = await resolveVersion(store, tenant, ref);
      return { version: await getVersion(store, tenant, ref.model, number) };
    }),

    listVersions: unary<pb.ListVersionsRequest, pb.ListVersionsResponse>(async (req, ctx) =>
      listVersions(
        store,
        { tenant: tenantOf(ctx), name: checkName('model', req.model, 'model') },
        { status: req.status, tags: req.tags },
        { size: pageSize(req.pageSize), token: req.pageToken },
      ),
    ),

    updateVersion: unary<pb.UpdateVersionRequest, pb.UpdateVersionResponse>(
      audited(
        audit,
        (req) => req.ref,
        async (req, ctx) => {
          const tenant = tenantOf(ctx);
          const ref = parseRef(req.ref);
          const setTags = checkTags(req.setTags, 'set_tags');
          const version = await store.transaction(async (tx) => {
            const number = await resolveVersion(tx, tenant, ref);
            await updateVersion(
              tx,
              tenant,
              ref.model,
              number,
              { description: req.description, setTags, removeTags: req.removeTags },
              deps.now(),
            );
            return getVersion(tx, tenant, ref.model, number);
          });
          return { version };
        },
      ),
    ),

    downloadVersion: serverStreaming<pb.DownloadVersionRequest, pb.DownloadVersionResponse>((req, ctx) =>
      downloadVersion(deps, req, ctx),
    ),

    compressVersion: serverStreaming<pb.CompressVersionRequest, pb.CompressVersionResponse>(async function* (req, ctx) {
      let made = '';
      let failure: unknown;
      try {
        for await (const message of compressVersion(deps, req, ctx)) {
          if (message.event?.$case === 'version')
            made = ` -> ${message.event.value.model}:${message.event.value.version}`;
          yield message;
        }
      } catch (error: unknown) {
        failure = error;
        throw error;
      } finally {
        await audit.record(
          ctx,
          `${req.ref}${made}`,
          failure ?? (ctx.signal.aborted ? cancelled('the call was cancelled') : undefined),
        );
      }
    }),

    setAlias: unary<pb.SetAliasRequest, pb.SetAliasResponse>(
      audited(
        audit,
        (req) => `${req.model}@${req.alias}`,
        async (req, ctx) => {
          const key = { tenant: tenantOf(ctx), name: checkName('model', req.model, 'model') };
          const alias = checkName('alias', req.alias);
          const result = await store.transaction(async (tx) => {
            const now = deps.now();
            const previousVersion = await setAlias(tx, key, alias, req.version, now);
            const changes = await refreshFollowers(tx, key.tenant, key.name, now);
            const model = await getModel(tx, key);
            await recordDeploymentChanges(
              tx,
              changes.map((change) => ({ type: 'upserted', ...change })),
            );
            return { previousVersion, model };
          });
          return { model: result.model, previousVersion: result.previousVersion };
        },
      ),
    ),

    deleteAlias: unary<pb.DeleteAliasRequest, pb.DeleteAliasResponse>(
      audited(
        audit,
        (req) => `${req.model}@${req.alias}`,
        async (req, ctx) => {
          const key = { tenant: tenantOf(ctx), name: checkName('model', req.model, 'model') };
          await store.transaction((tx) => deleteAlias(tx, key, checkName('alias', req.alias), deps.now()));
          return {};
        },
      ),
    ),
  };
}

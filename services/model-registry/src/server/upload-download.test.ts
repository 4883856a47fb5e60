import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { registry as pb } from '@quanta/contracts';
import { buildCnn, buildLstm, buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '@quanta/service-kit/testing';
import { BLOB_BACKENDS, startBlobBackend } from '../testing/blob-backends.js';
import type { BlobBackend, BlobProbe } from '../testing/blob-backends.js';
import { bearer, call, startHarness } from '../testing/harness.js';
import type { Harness } from '../testing/harness.js';
import { failure, grpc, pull, push } from '../testing/client.js';
import { inspectOnnxModel } from './inspector.js';

const OCR_CLS = join(
  REPO_ROOT,
  'node_modules',
  '@gutenye',
  'ocr-models',
  'assets',
  'ch_ppocr_mobile_v2.0_cls_infer.onnx',
);
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

describe.each(BLOB_BACKENDS)(
  'UploadVersion / DownloadVersion against a real crypto service, blobs in a %s',
  (backendName) => {
    let h: Harness;
    let backend: BlobBackend;
    let blobs: BlobProbe;
    let writer: string;
    let reader: string;
    let ocr: Buffer;
    /** Runs inside the inspector, while an upload is fully received but not yet published. */
    let duringInspection: (() => Promise<void>) | undefined;

    beforeAll(async () => {
      backend = await startBlobBackend(backendName);
      h = await startHarness({
        config: backend.config,
        inspect: async (source) => {
          await duringInspection?.();
          return inspectOnnxModel(source);
        },
      });
      writer = await h.token('acme', ['models:read', 'models:write']);
      reader = await h.token('acme', ['models:read']);
      ocr = await readFile(OCR_CLS);
      blobs = backend.probe(h.registry);
    }, 240_000);
    afterAll(async () => {
      await h?.close();
      await backend?.close();
    });

    it('round-trips the PP-OCR classifier byte for byte, sealed where it is stored', async () => {
      const version = await push(
        h.client,
        writer,
        {
          model: 'ocr-cls',
          description: 'PP-OCR mobile cls',
          expectedSha256: sha256(ocr),
          expectedSizeBytes: BigInt(ocr.length),
        },
        ocr,
      );
      expect(version).toMatchObject({
        model: 'ocr-cls',
        version: 1,
        status: pb.VersionStatus.VERSION_STATUS_READY,
        sha256: sha256(ocr),
        sizeBytes: BigInt(ocr.length),
      });
      expect(version.signature?.inputs[0]).toMatchObject({ name: 'x', datatype: 'FP32' });
      const pulled = await pull(h.client, reader, 'ocr-cls:1');
      expect(pulled.bytes.equals(ocr)).toBe(true);
      expect(pulled.version.sha256).toBe(sha256(ocr));

      // The plaintext is nowhere in the stored blob: look for 64-byte slices from several places.
      expect(await blobs.published()).toEqual([sha256(ocr)]);
      const stored = await blobs.stored('acme', sha256(ocr));
      expect(stored.length).toBeGreaterThan(ocr.length);
      for (const at of [0, 4096, Math.floor(ocr.length / 2), ocr.length - 64]) {
        expect(stored.includes(ocr.subarray(at, at + 64))).toBe(false);
      }
      if (backend.name === 'folder')
        expect((await stat(join(h.registry.blobDir, 'acme', sha256(ocr).slice(0, 2), sha256(ocr)))).mode & 0o077).toBe(
          0,
        );
    });

    it('numbers versions per model and stores identical content once', async () => {
      const v2 = await push(h.client, writer, { model: 'ocr-cls' }, ocr, 1000);
      expect(v2.version).toBe(2);
      const other = await push(h.client, writer, { model: 'ocr-copy' }, ocr);
      expect(other.version).toBe(1);
      expect(await blobs.published()).toEqual([sha256(ocr)]);
      const list = await call(
        h.client,
        'listVersions',
        { model: 'ocr-cls', pageSize: 0, pageToken: '', status: 0, tags: {} },
        reader,
      );
      expect(list.versions.map((v) => v.version)).toEqual([2, 1]);
    });

    it(
      'writes no plaintext copy of an upload anywhere under QUANTA_HOME or in the bucket, even while inspecting ' +
        'it',
      async () => {
        const model = Buffer.from(buildCnn());
        const slices = [0, 4096, Math.floor(model.length / 2), model.length - 64].map((at) =>
          model.subarray(at, at + 64),
        );
        let scanned = 0;
        duringInspection = async () => {
          for (const file of (await Promise.all([h.home, ...blobs.dirs].map(filesUnder))).flat()) {
            const bytes = await readFile(file).catch(() => Buffer.alloc(0)); // files may come and go (the crypto store)
            for (const slice of slices) expect(bytes.includes(slice), file).toBe(false);
            scanned += 1;
          }
        };
        try {
          const version = await push(h.client, writer, { model: 'no-scratch', createModel: true }, model);
          expect(version.signature?.initializerCount).toBeGreaterThan(0);
        } finally {
          duringInspection = undefined;
        }
        expect(scanned).toBeGreaterThan(0); // the temporary sealed blob at least
        expect((await pull(h.client, reader, 'no-scratch:1')).bytes.equals(model)).toBe(true);
      },
    );

    it('refuses a reader without models:write and a caller without a token', async () => {
      const denied = await failure(push(h.client, reader, { model: 'ocr-cls' }, ocr));
      expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
      const anonymous = await failure(call(h.client, 'getModel', { name: 'ocr-cls' }));
      expect(anonymous.code).toBe(grpc.status.UNAUTHENTICATED);
    });

    it('round-trips built MLP, CNN and LSTM models and reports their signatures', async () => {
      const mlp = Buffer.from(buildMlp({ inputSize: 4, hiddenSizes: [16], outputSize: 3 }));
      const v = await push(h.client, writer, { model: 'mlp', expectedSha256: sha256(mlp) }, mlp, 777);
      expect(v.signature?.inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [-1n, 4n], dimNames: ['N', ''] }]);
      expect(v.signature?.outputs[0]).toMatchObject({ datatype: 'FP32', shape: [-1n, 3n] });
      expect(v.signature?.parameterCount).toBe(BigInt(4 * 16 + 16 + 16 * 3 + 3));
      expect((await pull(h.client, reader, 'mlp', { chunkSizeBytes: 100 })).bytes.equals(mlp)).toBe(true);

      const cnn = Buffer.from(buildCnn());
      const c = await push(h.client, writer, { model: 'cnn' }, cnn);
      expect(c.signature?.inputs[0]).toMatchObject({ datatype: 'FP32', shape: [-1n, 3n, 32n, 32n] });
      expect(c.signature?.outputs[0]).toMatchObject({ shape: [-1n, 10n] });
      expect((await pull(h.client, reader, 'cnn:1')).bytes.equals(cnn)).toBe(true);

      const lstm = Buffer.from(buildLstm());
      const l = await push(h.client, writer, { model: 'lstm' }, lstm);
      expect(l.signature?.inputs.length).toBeGreaterThan(1);
      expect((await pull(h.client, reader, 'lstm')).bytes.equals(lstm)).toBe(true);
    });

    it(
      'downloads a model of many segments in any chunk size, and a download cancelled halfway ends while the ' +
        'next one is served',
      async () => {
        // 1024 x 1400 FP32 weights, ~5.5 MiB: five full 1 MiB segments and a short last one; chunks that split segments
        // and span them.
        const model = Buffer.from(buildMlp({ inputSize: 1024, hiddenSizes: [], outputSize: 1400, seed: 31 }));
        expect(model.length).toBeGreaterThan(5 * 1024 * 1024);
        await push(h.client, writer, { model: 'segments', expectedSha256: sha256(model) }, model, 1024 * 1024);
        for (const chunkSizeBytes of [0, 300_000, 1024 * 1024, 2 * 1024 * 1024 + 1]) {
          const pulled = await pull(h.client, reader, 'segments', { chunkSizeBytes });
          expect(pulled.bytes.equals(model), `chunk size ${chunkSizeBytes}`).toBe(true);
          expect(pulled.chunks).toBe(Math.ceil(model.length / (chunkSizeBytes === 0 ? 1024 * 1024 : chunkSizeBytes)));
        }
        // Read three chunks, then cancel (the server is then waiting for its send queue to empty).
        const stream = h.client.downloadVersion(
          { ref: 'segments', chunkSizeBytes: 65_536, tenant: '' },
          bearer(reader),
        );
        const ended = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
        let seen = 0;
        await new Promise<void>((resolve) => {
          stream.on('data', () => {
            seen += 1;
            if (seen === 3) resolve();
          });
        });
        stream.cancel();
        expect((await ended).code).toBe(grpc.status.CANCELLED);
        expect((await pull(h.client, reader, 'segments')).bytes.equals(model)).toBe(true);
      },
    );

    describe('bad uploads get their own status and leave nothing behind', () => {
      const mlp = Buffer.from(buildMlp({ seed: 7 }));

      async function expectNothingLeft(model: string): Promise<void> {
        const got = await failure(call(h.client, 'getModel', { name: model }, reader));
        expect(got.code).toBe(grpc.status.NOT_FOUND);
        expect(await blobs.temporaries()).toEqual([]);
        expect(await filesUnder(join(h.home, 'registry-tmp'))).toEqual([]);
        const rows = await h.registry.store.query<{ sha256: string }>('SELECT sha256 FROM registry_blobs');
        expect(await blobs.published()).toEqual(rows.map((r) => r.sha256).sort());
      }

      it('a digest mismatch', async () => {
        const error = await failure(
          push(h.client, writer, { model: 'bad-digest', expectedSha256: sha256(Buffer.from('other')) }, mlp),
        );
        expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(error.details).toMatch(/digest mismatch/);
        await expectNothingLeft('bad-digest');
      });

      it('a chunk after the declared end', async () => {
        const error = await failure(
          push(h.client, writer, { model: 'bad-long', expectedSizeBytes: BigInt(mlp.length - 10) }, mlp, 100),
        );
        expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(error.details).toMatch(/past the declared end/);
        await expectNothingLeft('bad-long');
      });

      it('a truncated file (fewer bytes than declared)', async () => {
        const error = await failure(
          push(
            h.client,
            writer,
            { model: 'bad-short', expectedSizeBytes: BigInt(mlp.length) },
            mlp.subarray(0, mlp.length - 50),
          ),
        );
        expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(error.details).toMatch(/truncated/);
        await expectNothingLeft('bad-short');
      });

      it('a truncated ONNX file (no size declared) and a file that is not ONNX', async () => {
        const cut = await failure(
          push(h.client, writer, { model: 'bad-cut' }, mlp.subarray(0, Math.floor(mlp.length / 2))),
        );
        expect(cut.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(cut.details).toMatch(/not a valid ONNX model/);
        const text = await failure(
          push(h.client, writer, { model: 'bad-text' }, Buffer.from('this is a README, not a model\n'.repeat(50))),
        );
        expect(text.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(text.details).toMatch(/not a valid ONNX model/);
        await expectNothingLeft('bad-cut');
        await expectNothingLeft('bad-text');
      });

      it('an upload over the size limit, an invalid name, a missing model without create_model', async () => {
        const big = await failure(
          push(h.client, writer, { model: 'bad-big', expectedSizeBytes: 3n * 1024n ** 3n }, mlp),
        );
        expect(big.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
        const name = await failure(push(h.client, writer, { model: 'Bad Name!' }, mlp));
        expect(name.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(name.details).toMatch(/not a valid model name/);
        const missing = await failure(push(h.client, writer, { model: 'bad-missing', createModel: false }, mlp));
        expect(missing.code).toBe(grpc.status.NOT_FOUND);
        await expectNothingLeft('bad-big');
      });

      it('an upload cancelled halfway leaves no version, and no file after a restart', async () => {
        const keep = Buffer.from(buildMlp({ seed: 5 }));
        await push(h.client, writer, { model: 'keep' }, keep);
        const big = Buffer.concat([mlp, Buffer.alloc(4 * 1024 * 1024, 1)]);
        let ended!: Promise<grpc.ServiceError | null>;
        const stream = await new Promise<grpc.ClientWritableStream<pb.UploadVersionRequest>>((resolveStream) => {
          ended = new Promise((resolveEnd) =>
            resolveStream(h.client.uploadVersion(bearer(writer), (error) => resolveEnd(error))),
          );
        });
        const flushed = (message: pb.UploadVersionRequest): Promise<void> =>
          new Promise((resolve) => stream.write(message, () => resolve()));
        await flushed({
          part: {
            $case: 'header',
            value: {
              model: 'cancelled',
              description: '',
              tags: {},
              expectedSha256: '',
              expectedSizeBytes: BigInt(big.length),
              createModel: true,
              lineage: undefined,
            },
          },
        });
        for (let offset = 0; offset < big.length / 2; offset += 256 * 1024)
          await flushed({ part: { $case: 'chunk', value: big.subarray(offset, offset + 256 * 1024) } });
        stream.cancel();
        expect((await ended)?.code).toBe(grpc.status.CANCELLED);

        // What an upload killed with its process would leave: a temporary blob (in a bucket, an
        // unfinished multipart upload too), a plaintext scratch copy, and a published blob whose
        // metadata never committed.
        const orphan = await blobs.plantLeftovers('acme');
        await mkdir(join(h.home, 'registry-tmp'), { recursive: true });
        await writeFile(join(h.home, 'registry-tmp', 'dead.onnx'), mlp);
        expect(await blobs.published()).toContain(orphan);

        await h.restart();
        expect((await failure(call(h.client, 'getModel', { name: 'cancelled' }, reader))).code).toBe(
          grpc.status.NOT_FOUND,
        );
        expect(await blobs.temporaries()).toEqual([]);
        expect(await filesUnder(join(h.home, 'registry-tmp'))).toEqual([]);
        const published = await blobs.published();
        expect(published).not.toContain(orphan);
        // Everything still there is a recorded blob and still downloads.
        const rows = await h.registry.store.query<{ sha256: string }>('SELECT sha256 FROM registry_blobs');
        expect(published).toEqual(rows.map((r) => r.sha256).sort());
        expect((await pull(h.client, reader, 'keep')).bytes.equals(keep)).toBe(true);
      });
    });

    it('a damaged or missing stored blob ends the download with DATA_LOSS', async () => {
      const model = Buffer.from(buildMlp({ seed: 99 }));
      const v = await push(h.client, writer, { model: 'damaged' }, model);
      const sealed = await blobs.stored('acme', v.sha256);
      sealed[sealed.length - 20] = (sealed[sealed.length - 20] ?? 0) ^ 1;
      await blobs.replace('acme', v.sha256, sealed);
      const error = await failure(pull(h.client, reader, 'damaged:1'));
      expect(error.code).toBe(grpc.status.DATA_LOSS);
      expect(error.details).toMatch(/damaged/);

      const gone = await push(h.client, writer, { model: 'gone' }, Buffer.from(buildMlp({ seed: 98 })));
      await h.registry.blobs.delete({ tenant: 'acme', sha256: gone.sha256 });
      const missing = await failure(pull(h.client, reader, 'gone:1'));
      expect(missing.code).toBe(grpc.status.DATA_LOSS);
      expect(missing.details).toMatch(/missing/);
    });
  },
);

// Wire compatibility of the `inference` contract with the public KServe v2 proto.
// The second source is KServe's grpc_predict_v2.proto (test/fixtures), loaded with
// @grpc/proto-loader (protobufjs), exactly as a stock KServe client would load it;
// the first is our ts-proto code. Bytes made by one must decode to the same values
// in the other, and a client built from the fixture must reach our service.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { descriptorSetBase64, inference, monitoring, registry } from './index.js';

const here = dirname(fileURLToPath(import.meta.url));
const fixture = join(here, '..', 'test', 'fixtures', 'kserve-grpc-predict-v2.proto');
const protoRoot = join(here, '..', '..', '..', 'proto');

// The options a KServe client typically uses: proto field names, 64-bit integers as
// decimal strings (no precision loss), oneof discriminator fields.
const loaderOptions: protoLoader.Options = { keepCase: true, longs: String, enums: String, oneofs: true };
const kserve = protoLoader.loadSync(fixture, loaderOptions);
const ours = protoLoader.loadSync('inference/grpc_service.proto', { ...loaderOptions, includeDirs: [protoRoot] });
const kserveService = kserve['inference.GRPCInferenceService'] as grpc.ServiceDefinition;
const kserveInfer = kserveService['ModelInfer']!;

const fp32 = Float32Array.from([0.5, -1.25, 3.4028234663852886e38, 1e-45, 0, 7]);
const rawFp32 = Buffer.from(fp32.buffer);
const rawBytes = Buffer.from([3, 0, 0, 0, 0x61, 0x62, 0x63, 0, 0, 0, 0]); // BYTES ["abc", ""]

// Every typed-contents field, with values at the edges of each wire type.
const typedContents: inference.InferTensorContents = {
  boolContents: [true, false, true],
  intContents: [-2147483648, -1, 0, 2147483647],
  int64Contents: [-9223372036854775808n, -1n, 9007199254740993n, 9223372036854775807n],
  uintContents: [0, 255, 65535, 4294967295],
  uint64Contents: [0n, 18446744073709551615n, 9007199254740993n],
  fp32Contents: [0.5, -1.25, 0.1],
  fp64Contents: [0.1, -2.5e300, Number.MIN_VALUE],
  bytesContents: [Buffer.from('hello'), Buffer.alloc(0), Buffer.from([0, 255, 128])],
};

const ourRequest: inference.ModelInferRequest = {
  modelName: 'cifar',
  modelVersion: '3',
  id: 'req-42',
  parameters: {
    sequence_id: { parameterChoice: { $case: 'int64Param', value: -9007199254740993n } },
    sequence_start: { parameterChoice: { $case: 'boolParam', value: true } },
    priority_class: { parameterChoice: { $case: 'stringParam', value: 'gold' } },
  },
  inputs: [
    { name: 'x', datatype: 'FP32', shape: [2n, 3n], parameters: {}, contents: undefined },
    {
      name: 'tokens',
      datatype: 'BYTES',
      shape: [1n, 2n],
      parameters: { binary_data_size: { parameterChoice: { $case: 'int64Param', value: 11n } } },
    },
    { name: 'typed', datatype: 'INT64', shape: [4n, 1099511627776n, -1n], parameters: {}, contents: typedContents },
  ],
  outputs: [
    { name: 'probs', parameters: { classification: { parameterChoice: { $case: 'int64Param', value: 3n } } } },
    { name: 'logits', parameters: {} },
  ],
  rawInputContents: [rawFp32, rawBytes],
};

// The same request as protobufjs (and so a KServe client) sees it.
const kserveTypedContents = {
  bool_contents: [true, false, true],
  int_contents: [-2147483648, -1, 0, 2147483647],
  int64_contents: ['-9223372036854775808', '-1', '9007199254740993', '9223372036854775807'],
  uint_contents: [0, 255, 65535, 4294967295],
  uint64_contents: ['0', '18446744073709551615', '9007199254740993'],
  fp32_contents: [0.5, -1.25, Math.fround(0.1)],
  fp64_contents: [0.1, -2.5e300, Number.MIN_VALUE],
  bytes_contents: [Buffer.from('hello'), Buffer.alloc(0), Buffer.from([0, 255, 128])],
};
const kserveRequest = {
  model_name: 'cifar',
  model_version: '3',
  id: 'req-42',
  parameters: {
    sequence_id: { int64_param: '-9007199254740993', parameter_choice: 'int64_param' },
    sequence_start: { bool_param: true, parameter_choice: 'bool_param' },
    priority_class: { string_param: 'gold', parameter_choice: 'string_param' },
  },
  inputs: [
    { name: 'x', datatype: 'FP32', shape: ['2', '3'] },
    {
      name: 'tokens',
      datatype: 'BYTES',
      shape: ['1', '2'],
      parameters: { binary_data_size: { int64_param: '11', parameter_choice: 'int64_param' } },
    },
    { name: 'typed', datatype: 'INT64', shape: ['4', '1099511627776', '-1'], contents: kserveTypedContents },
  ],
  outputs: [
    { name: 'probs', parameters: { classification: { int64_param: '3', parameter_choice: 'int64_param' } } },
    { name: 'logits' },
  ],
  raw_input_contents: [rawFp32, rawBytes],
};

const ourResponse: inference.ModelInferResponse = {
  modelName: 'cifar',
  modelVersion: '3',
  id: 'req-42',
  parameters: { sequence_end: { parameterChoice: { $case: 'boolParam', value: false } } },
  outputs: [
    { name: 'probs', datatype: 'FP32', shape: [2n, 3n], parameters: {}, contents: undefined },
    { name: 'labels', datatype: 'INT64', shape: [4n], parameters: {}, contents: typedContents },
  ],
  rawOutputContents: [rawFp32],
};
const kserveResponse = {
  model_name: 'cifar',
  model_version: '3',
  id: 'req-42',
  // An explicit `false` in a oneof is on the wire (presence), unlike a plain proto3 bool.
  parameters: { sequence_end: { bool_param: false, parameter_choice: 'bool_param' } },
  outputs: [
    { name: 'probs', datatype: 'FP32', shape: ['2', '3'] },
    { name: 'labels', datatype: 'INT64', shape: ['4'], contents: kserveTypedContents },
  ],
  raw_output_contents: [rawFp32],
};

// ts-proto reads typed FP32 elements back as float32 values.
const asReadBack = (contents: inference.InferTensorContents): inference.InferTensorContents => ({
  ...contents,
  fp32Contents: contents.fp32Contents.map((v) => Math.fround(v)),
});

describe('inference contract against the public KServe v2 proto', () => {
  it('a ModelInferRequest encoded by our code decodes with the KServe definition to the same values', () => {
    const bytes = Buffer.from(inference.ModelInferRequest.encode(ourRequest).finish());
    expect(kserveInfer.requestDeserialize(bytes)).toEqual(kserveRequest);
  });

  it('a ModelInferRequest encoded with the KServe definition decodes with our code to the same values', () => {
    const bytes = kserveInfer.requestSerialize(kserveRequest);
    const decoded = inference.ModelInferRequest.decode(bytes);
    const expected: inference.ModelInferRequest = {
      ...ourRequest,
      inputs: ourRequest.inputs.map((t) => (t.contents ? { ...t, contents: asReadBack(t.contents) } : t)),
    };
    expect(decoded).toEqual(expected);
    expect(Buffer.concat(decoded.rawInputContents)).toEqual(Buffer.concat([rawFp32, rawBytes]));
  });

  it('a ModelInferResponse round-trips in both directions', () => {
    const ourBytes = Buffer.from(inference.ModelInferResponse.encode(ourResponse).finish());
    expect(kserveInfer.responseDeserialize(ourBytes)).toEqual(kserveResponse);

    const decoded = inference.ModelInferResponse.decode(kserveInfer.responseSerialize(kserveResponse));
    expect(decoded).toEqual({
      ...ourResponse,
      outputs: ourResponse.outputs.map((t) => (t.contents ? { ...t, contents: asReadBack(t.contents) } : t)),
    });
    const raw = decoded.rawOutputContents[0]!;
    expect(Array.from({ length: raw.byteLength / 4 }, (_, i) => raw.readFloatLE(i * 4))).toEqual(Array.from(fp32));
  });

  it('every KServe message, nested ones included, has the same fields in our proto (ours may add more)', () => {
    type Descriptor = {
      name: string;
      field: { name: string; number: number; label: string; type: string; typeName: string; oneofIndex?: number }[];
      nestedType: Descriptor[];
      oneofDecl: { name: string }[];
    };
    // Name, number, label, type and oneof membership decide the wire; options and
    // comments do not.
    // Triton later added fields KServe lacks (InferParameter's double_param and uint64_param),
    // so compare every KServe field against ours, restricted to the field names KServe has.
    const shape = (d: Descriptor, only?: Descriptor): unknown => ({
      name: d.name,
      fields: d.field
        .filter((f) => only === undefined || only.field.some((k) => k.name === f.name))
        .map((f) => [f.name, f.number, f.label, f.type, f.typeName, f.oneofIndex]),
      oneofs: d.oneofDecl.map((o) => o.name),
      nested: d.nestedType.map((n) =>
        shape(
          n,
          only?.nestedType.find((k) => k.name === n.name),
        ),
      ),
    });
    const typeOf = (def: protoLoader.PackageDefinition, name: string): Descriptor =>
      (def[name] as protoLoader.MessageTypeDefinition<unknown, unknown>).type as Descriptor;
    const messageNames = Object.keys(kserve).filter((k) => 'format' in kserve[k]!);
    expect(messageNames).toHaveLength(14);
    for (const name of messageNames) {
      expect(ours[name], `message ${name} is missing from our proto`).toBeDefined();
      const theirs = typeOf(kserve, name);
      expect(shape(typeOf(ours, name), theirs), `fields of ${name}`).toEqual(shape(theirs));
    }
  });

  it('our service has the KServe methods at the same paths with the same streaming kinds', () => {
    const ourMethods = Object.values(inference.GRPCInferenceServiceService);
    for (const [name, method] of Object.entries(kserveService)) {
      const match = ourMethods.find((m) => m.path === method.path);
      expect(match, `method ${name} (${method.path})`).toBeDefined();
      expect([match!.requestStream, match!.responseStream]).toEqual([method.requestStream, method.responseStream]);
    }
  });

  it("our service's method paths are exactly Triton's", () => {
    // From Triton's grpc_service.proto (triton-inference-server/common), ModelConfig included
    // (its messages are in proto/inference/model_config.proto).
    const triton: Record<string, [boolean, boolean]> = {
      ServerLive: [false, false],
      ServerReady: [false, false],
      ModelReady: [false, false],
      ServerMetadata: [false, false],
      ModelMetadata: [false, false],
      ModelConfig: [false, false],
      ModelInfer: [false, false],
      ModelStreamInfer: [true, true],
      ModelStatistics: [false, false],
      RepositoryIndex: [false, false],
      RepositoryModelLoad: [false, false],
      RepositoryModelUnload: [false, false],
      SystemSharedMemoryStatus: [false, false],
      SystemSharedMemoryRegister: [false, false],
      SystemSharedMemoryUnregister: [false, false],
      CudaSharedMemoryStatus: [false, false],
      CudaSharedMemoryRegister: [false, false],
      CudaSharedMemoryUnregister: [false, false],
      TraceSetting: [false, false],
      LogSettings: [false, false],
    };
    const have = Object.fromEntries(
      Object.values(inference.GRPCInferenceServiceService).map((m) => [m.path, [m.requestStream, m.responseStream]]),
    );
    const want = Object.fromEntries(
      Object.entries(triton).map(([name, kinds]) => [`/inference.GRPCInferenceService/${name}`, kinds]),
    );
    expect(have).toEqual(want);
  });
});

describe('a client built from the KServe proto against a server built from our code', () => {
  let server: grpc.Server;
  let client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;

  beforeAll(async () => {
    server = new grpc.Server();
    // Answers with the request's identity and its inputs as outputs, so that every
    // field crosses the wire twice.
    const modelInfer: inference.GRPCInferenceServiceServer['modelInfer'] = (call, callback) => {
      const req = call.request;
      callback(null, {
        modelName: req.modelName,
        modelVersion: req.modelVersion,
        id: req.id,
        parameters: req.parameters,
        outputs: req.inputs.map(({ name, datatype, shape, parameters, contents }) => ({
          name,
          datatype,
          shape,
          parameters,
          contents,
        })),
        rawOutputContents: req.rawInputContents,
      });
    };
    server.addService(inference.GRPCInferenceServiceService, { modelInfer });
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      );
    });
    const pkg = grpc.loadPackageDefinition(kserve) as unknown as {
      inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
    };
    client = new pkg.inference.GRPCInferenceService(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
    ) as typeof client;
  });

  afterAll(() => {
    client.close();
    server.forceShutdown();
  });

  const call = (method: string, request: unknown): Promise<unknown> =>
    new Promise((resolve, reject) => {
      client[method]!(request, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)));
    });

  it('ModelInfer answers a stock KServe client with every field intact', async () => {
    const res = (await call('ModelInfer', kserveRequest)) as Record<string, unknown>;
    expect(res).toEqual({
      model_name: 'cifar',
      model_version: '3',
      id: 'req-42',
      parameters: kserveRequest.parameters,
      outputs: kserveRequest.inputs,
      raw_output_contents: kserveRequest.raw_input_contents,
    });
  });

  it('a method the server does not implement answers UNIMPLEMENTED', async () => {
    await expect(call('ServerLive', {})).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
  });
});

describe('the embedded descriptor set (server reflection)', () => {
  it('holds every contract file, with each service and its methods', () => {
    const set = fromBinary(FileDescriptorSetSchema, Buffer.from(descriptorSetBase64, 'base64'));
    const services = Object.fromEntries(
      set.file.flatMap((f) => f.service.map((s) => [`${f.package}.${s.name}`, s.method.map((m) => m.name)])),
    );
    const methodsOf = (def: Record<string, { path: string }>): string[] =>
      Object.values(def).map((m) => m.path.split('/')[2]!);
    expect(services['inference.GRPCInferenceService']).toEqual(methodsOf(inference.GRPCInferenceServiceService));
    expect(services['quanta.registry.v1.RegistryService']).toEqual(methodsOf(registry.RegistryServiceService));
    expect(services['quanta.monitoring.v1.MonitoringService']).toEqual(methodsOf(monitoring.MonitoringServiceService));
    expect(services['grpc.health.v1.Health']).toBeDefined();
    expect(services['quanta.crypto.v1.CryptoService']).toBeDefined();
  });
});

describe('registry and monitoring drafts', () => {
  it('an upload stream message and a deployment watch event survive encoding', () => {
    const header: registry.UploadVersionRequest = {
      part: {
        $case: 'header',
        value: {
          model: 'cifar',
          description: 'int8',
          tags: { stage: 'candidate' },
          expectedSha256: 'ab'.repeat(32),
          expectedSizeBytes: 3n << 30n,
          lineage: {
            origin: {
              $case: 'parent',
              value: {
                model: 'cifar',
                version: 3,
                transform: 'quantize-int8',
                transformParams: { per_channel: 'true' },
              },
            },
          },
          createModel: true,
        },
      },
    };
    expect(registry.UploadVersionRequest.decode(registry.UploadVersionRequest.encode(header).finish())).toEqual(header);

    const record: monitoring.InferenceRecord = {
      tenant: 't1',
      model: 'cifar',
      version: '4',
      deployment: 'cifar-prod',
      requestId: 'r1',
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      statusCode: 8,
      queueUs: 1500n,
      computeUs: 2500n,
      totalUs: -1n,
      batchSize: 8,
      bytesIn: 12288n,
      bytesOut: 40n,
      route: '',
      cacheHit: false,
      cacheMiss: false,
      time: new Date('2026-11-29T01:00:00.123Z'),
    };
    const batch = monitoring.IngestRequest.encode({ records: [record, record], inputSummaries: [] }).finish();
    expect(monitoring.IngestRequest.decode(batch).records).toEqual([record, record]);
  });
});

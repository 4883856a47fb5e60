/**
 * The server processes of the inference benchmark, forked by bench-inference.ts as
 * `bench-inference-servers.ts KIND MODEL`. Each listens on 127.0.0.1:0 and sends
 * `{kind: 'ready', port, token}` to its parent; 'cpu' asks for its CPU seconds; 'stop' ends it.
 *   seed   a seed-style JSON REST server: POST /predict {"data": nested array} → {"prediction": nested
 *          array}, one onnxruntime run per request, as the seed's Flask example does (node:http)
 *   empty  a grpc-js server with an empty unary method (the floor of a gRPC call) and a bidi stream
 *          that echoes each message back (the floor of a round trip on an open stream)
 *   bare   the least a KServe v2 gRPC server can do: grpc-js with only ModelInfer, the request decoded by
 *          @quanta/contracts' codec, its raw input handed to one in-process onnxruntime run where it lies
 *          (no batching, validation, auth, statistics or telemetry; service-kit's HTTP/2 windows): a
 *          floor for Quanta's latency
 *   quanta Quanta's inference service (startInferenceServer: gRPC and REST, real EdDSA tokens from an
 *          in-memory issuer) with MODEL loaded straight into its core, dynamically batched
 *          (BENCH_MAX_BATCH; the deployment execution:instances:delayUs[:auto|N+N] as its third argument;
 *          BENCH_THREADS as every session)
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { decodeModelInferRequest, encodeModelInferResponse, inference } from '@quanta/contracts';
import { DEFAULT_FLOW_CONTROL_WINDOW, widenFlowControlWindows } from '@quanta/service-kit';
import * as ort from 'onnxruntime-node';
import { pino } from 'pino';
import {
  BENCH_THREADS,
  EMPTY_METHOD,
  EMPTY_STREAM_METHOD,
  benchModel,
  nest,
  parseDeployment,
  sessionOptions,
  type ToParent,
  startBenchInferenceServer,
} from './bench-inference-models.js';
import { cpuSeconds } from './measure.js';

const send = (message: ToParent): void => {
  process.send?.(message);
};

/** The shape of a nested JSON array (numpy's np.array(data).shape for a rectangular one). */
function shapeOf(value: unknown): number[] {
  const shape: number[] = [];
  for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  return shape;
}

interface Running {
  readonly port: number;
  /** The bearer token clients send ('' where none is checked). */
  readonly token: string;
  close(): Promise<void>;
}

async function seedServer(modelName: string): Promise<Running> {
  const model = benchModel(modelName);
  const session = await ort.InferenceSession.create(await model.bytes(), sessionOptions());
  const answer = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST' || req.url !== '/predict') return answer(res, 404, { error: 'POST /predict' });
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    // What Flask's request.get_json() + np.array(data, dtype=np.float32) + session.run + tolist() do.
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data: unknown };
    const shape = shapeOf(body.data);
    const input = new ort.Tensor(
      'float32',
      Float32Array.from((body.data as unknown[]).flat(Infinity) as number[]),
      shape,
    );
    const outputs = await session.run({ [model.input]: input });
    const out = outputs[model.output]!;
    answer(res, 200, { prediction: nest(out.data as Float32Array, out.dims) });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) =>
      answer(res, 500, { error: error instanceof Error ? error.message : String(error) }),
    );
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    token: '',
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await session.release();
    },
  };
}

async function emptyServer(): Promise<Running> {
  const server = new grpc.Server();
  const identity = (b: Buffer): Buffer => b;
  server.register(
    EMPTY_METHOD,
    (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) =>
      callback(null, Buffer.alloc(0)),
    identity,
    identity,
    'unary',
  );
  server.register(
    EMPTY_STREAM_METHOD,
    (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (message: Buffer) => call.write(message));
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
    identity,
    identity,
    'bidi',
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  return { port, token: '', close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
}

async function bareServer(modelName: string): Promise<Running> {
  const model = benchModel(modelName);
  const session = await ort.InferenceSession.create(await model.bytes(), sessionOptions());
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20 });
  const infer = async (request: inference.ModelInferRequest): Promise<Buffer> => {
    const input = request.inputs[0];
    const raw = request.rawInputContents[0];
    if (input === undefined || raw === undefined)
      throw new Error('the bare server takes one input in raw_input_contents');
    const data =
      raw.byteOffset % 4 === 0
        ? new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4)
        : new Float32Array(new Uint8Array(raw).buffer);
    const outputs = await session.run({ [input.name]: new ort.Tensor('float32', data, input.shape.map(Number)) });
    const out = outputs[model.output]!;
    const bytes = out.data as Float32Array;
    return encodeModelInferResponse({
      modelName: request.modelName,
      modelVersion: '1',
      id: request.id,
      parameters: {},
      outputs: [
        { name: model.output, datatype: 'FP32', shape: out.dims.map(BigInt), parameters: {}, contents: undefined },
      ],
      rawOutputContents: [Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)],
    });
  };
  server.register(
    inference.GRPCInferenceServiceService.modelInfer.path,
    (call: grpc.ServerUnaryCall<inference.ModelInferRequest, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      infer(call.request).then(
        (answer) => callback(null, answer),
        (error: unknown) =>
          callback({ code: grpc.status.INTERNAL, details: error instanceof Error ? error.message : String(error) }),
      );
    },
    (b: Buffer) => b,
    decodeModelInferRequest,
    'unary',
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  // The same HTTP/2 windows as Quanta's services (grpc-js's own 64 KiB stalls every request over it).
  widenFlowControlWindows(server, DEFAULT_FLOW_CONTROL_WINDOW, pino({ level: 'warn' }));
  return {
    port,
    token: '',
    close: async () => {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await session.release();
    },
  };
}

/** The tenant the benchmark's token and model belong to. */
const BENCH_TENANT = 'bench';

async function quantaServer(modelName: string, deploymentSpec: string): Promise<Running> {
  const model = benchModel(modelName);
  const deployment = parseDeployment(deploymentSpec);
  const env = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
  const { server, issuer } = await startBenchInferenceServer({ execution: deployment.execution });
  const loaded = await server.manager.load(BENCH_TENANT, model.name, '1', await model.bytes(), {
    maxBatchSize: env('BENCH_MAX_BATCH', 64),
    maxQueueDelayUs: deployment.delayUs,
    ...(deployment.preferred === 'auto'
      ? { tunePreferredBatchSize: true }
      : { preferredBatchSizes: deployment.preferred }),
    instanceCount: deployment.instances,
    execution: deployment.execution,
    maxQueueSize: 0,
    sequenceState: [],
    sequenceIdleTimeoutMs: 0,
    threadsPerInstance: BENCH_THREADS,
  });
  await server.manager.activate(BENCH_TENANT, model.name, '1');
  // Measured or configured, the sizes in effect go in the benchmark's log.
  if (loaded.preferredBatchSizes.length > 0)
    console.error(
      `quanta ${model.name} ${deploymentSpec}: preferred batch sizes ${loaded.preferredBatchSizes.join(', ')}`,
    );
  const token = await issuer.issue({
    tenant: BENCH_TENANT,
    subject: 'bench',
    scopes: ['infer', 'models:read'],
    ttlSeconds: 3600,
  });
  return {
    port: server.port,
    token,
    close: async () => {
      if (deployment.preferred === 'auto')
        console.error(
          `quanta ${model.name} ${deploymentSpec}: ` +
            `measured preferred batch size ${loaded.preferredBatchSizes.join(', ') || 'none yet'}`,
        );
      await server.stop({ graceMs: 1000 });
    },
  };
}

async function main(): Promise<void> {
  const [kind, modelName, deployment] = process.argv.slice(2);
  const server =
    kind === 'seed'
      ? await seedServer(modelName ?? '')
      : kind === 'empty'
        ? await emptyServer()
        : kind === 'bare'
          ? await bareServer(modelName ?? '')
          : kind === 'quanta'
            ? await quantaServer(modelName ?? '', deployment ?? '')
            : undefined;
  if (server === undefined) throw new Error(`unknown server kind "${kind}"`);
  process.on('message', (message: unknown) => {
    if (message === 'cpu') send({ kind: 'cpu', seconds: cpuSeconds() });
    if (message === 'stop') void server.close().then(() => process.exit(0));
  });
  send({ kind: 'ready', port: server.port, token: server.token });
}

await main();

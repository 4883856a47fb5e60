/**
 * The server processes of the inference benchmark, forked by bench-inference.ts as
 * `bench-inference-servers.ts KIND MODEL`. Each listens on 127.0.0.1:0 and sends
 * `{kind: 'ready', port, token}` to its parent; 'cpu' asks for its CPU seconds; 'stop' ends it.
 *   seed   a seed-style JSON REST server: POST /predict {"data": nested array} → {"prediction": nested
 *          array}, one onnxruntime run per request, as the seed's Flask example does (node:http)
 *   empty  a grpc-js server with one empty unary method: the floor of a gRPC call
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import * as ort from 'onnxruntime-node';
import { EMPTY_METHOD, benchModel, nest, type ToParent } from './bench-inference-models.js';
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

async function seedServer(modelName: string): Promise<{ port: number; close(): Promise<void> }> {
  const model = benchModel(modelName);
  const session = await ort.InferenceSession.create(await model.bytes());
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
    const input = new ort.Tensor('float32', Float32Array.from((body.data as unknown[]).flat(Infinity) as number[]), shape);
    const outputs = await session.run({ [model.input]: input });
    const out = outputs[model.output]!;
    answer(res, 200, { prediction: nest(out.data as Float32Array, out.dims) });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => answer(res, 500, { error: error instanceof Error ? error.message : String(error) }));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await session.release();
    },
  };
}

async function emptyServer(): Promise<{ port: number; close(): Promise<void> }> {
  const server = new grpc.Server();
  const identity = (b: Buffer): Buffer => b;
  server.register(EMPTY_METHOD, (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.alloc(0)), identity, identity, 'unary');
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))),
  );
  return { port, close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
}

async function main(): Promise<void> {
  const [kind, modelName] = process.argv.slice(2);
  const server = kind === 'seed' ? await seedServer(modelName ?? '') : kind === 'empty' ? await emptyServer() : undefined;
  if (server === undefined) throw new Error(`unknown server kind "${kind}"`);
  process.on('message', (message: unknown) => {
    if (message === 'cpu') send({ kind: 'cpu', seconds: cpuSeconds() });
    if (message === 'stop') void server.close().then(() => process.exit(0));
  });
  send({ kind: 'ready', port: server.port, token: '' });
}

await main();

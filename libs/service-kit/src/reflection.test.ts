import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unary } from './handlers.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import type { Running } from './testing/harness.js';
import { startEcho } from './testing/harness.js';

const require = createRequire(import.meta.url);
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}
type ReflectionCtor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => grpc.Client & {
  ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse>;
};

/** A reflection client made from the .proto shipped inside @grpc/reflection (not from our code). */
function reflectionClient(version: 'v1' | 'v1alpha', port: number): InstanceType<ReflectionCtor> {
  const root = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, { includeDirs: [root] });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: Record<string, { ServerReflection: ReflectionCtor }> };
  };
  const Ctor = loaded.grpc.reflection[version]?.ServerReflection;
  if (Ctor === undefined) throw new Error(`no reflection ${version} in the proto`);
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

async function ask(client: InstanceType<ReflectionCtor>, request: object): Promise<ReflectionResponse> {
  const call = client.ServerReflectionInfo();
  const answer = new Promise<ReflectionResponse>((resolve, reject) => {
    call.once('data', resolve);
    call.once('error', reject);
  });
  call.write({ host: '', ...request });
  const response = await answer;
  call.end();
  return response;
}

let running: Running;
beforeAll(async () => {
  running = await startEcho({
    Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, (req) =>
      Promise.resolve({ text: req.text, index: 0, payload: Buffer.alloc(0), tenant: '' }),
    ),
  });
});
afterAll(async () => {
  await running.close();
});

describe('server reflection', () => {
  for (const version of ['v1', 'v1alpha'] as const) {
    it(`lists the served services over ${version}, and only those`, async () => {
      const client = reflectionClient(version, running.port);
      try {
        const response = await ask(client, { listServices: '' });
        const names = response.listServicesResponse?.service.map((s) => s.name).sort();
        expect(names).toEqual([
          'grpc.health.v1.Health',
          'grpc.reflection.v1.ServerReflection',
          'grpc.reflection.v1alpha.ServerReflection',
          'quanta.kittest.v1.EchoService',
        ]);
      } finally {
        client.close();
      }
    });
  }

  it('describes a service by symbol (its file descriptor)', async () => {
    const client = reflectionClient('v1', running.port);
    try {
      const response = await ask(client, { fileContainingSymbol: 'grpc.health.v1.Health' });
      const files = response.fileDescriptorResponse?.fileDescriptorProto ?? [];
      expect(files.length).toBeGreaterThan(0);
      expect(Buffer.concat(files).toString('latin1')).toContain('HealthCheckRequest');
    } finally {
      client.close();
    }
  });

  it('lets buf curl list every method without .proto files', async () => {
    const buf = join(repoRoot, 'node_modules', '.bin', 'buf');
    const { stdout } = await promisify(execFile)(
      buf,
      ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--list-methods', `http://127.0.0.1:${running.port}`],
      { timeout: 20_000 },
    );
    const methods = stdout.split('\n').filter(Boolean);
    expect(methods).toContain('grpc.health.v1.Health/Check');
    expect(methods).toContain('grpc.health.v1.Health/Watch');
    expect(methods).toContain('quanta.kittest.v1.EchoService/Echo');
    expect(methods).toContain('quanta.kittest.v1.EchoService/Chat');
  });

  it('lets buf curl call Health/Check with the schema from reflection', async () => {
    const buf = join(repoRoot, 'node_modules', '.bin', 'buf');
    const { stdout } = await promisify(execFile)(
      buf,
      [
        'curl',
        '--protocol',
        'grpc',
        '--http2-prior-knowledge',
        '-d',
        '{"service":""}',
        `http://127.0.0.1:${running.port}/grpc.health.v1.Health/Check`,
      ],
      { timeout: 20_000 },
    );
    expect(JSON.parse(stdout)).toEqual({ status: 'SERVING' });
  });
});

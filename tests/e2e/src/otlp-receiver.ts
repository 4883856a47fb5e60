// A minimal OTLP/gRPC trace receiver (what Jaeger or a collector exposes on 4317), built from the
// opentelemetry-proto files that libs/telemetry's tests keep, so the services' exported spans are
// decoded by a second party.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { REPO_ROOT } from './stack.js';

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: string;
  serviceName: string | undefined;
  attributes: Record<string, unknown>;
  statusCode: string;
  links: { traceId: string; spanId: string }[];
}

interface WireAnyValue {
  value?: string;
  [field: string]: unknown;
}
interface WireKeyValue {
  key: string;
  value: WireAnyValue | null;
}
interface WireSpan {
  trace_id: Buffer;
  span_id: Buffer;
  parent_span_id: Buffer;
  name: string;
  kind: string;
  attributes: WireKeyValue[];
  status: { code: string } | null;
  links: { trace_id: Buffer; span_id: Buffer }[];
}
interface ExportRequest {
  resource_spans: { resource: { attributes: WireKeyValue[] }; scope_spans: { spans: WireSpan[] }[] }[];
}

const fixtures = join(REPO_ROOT, 'libs', 'telemetry', 'test', 'fixtures');

export interface OtlpReceiver {
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  stop(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const definition = protoLoader.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto', {
    includeDirs: [fixtures],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition);
  const service = (
    loaded['opentelemetry'] as grpc.GrpcObject & {
      proto: { collector: { trace: { v1: { TraceService: grpc.ServiceClientConstructor } } } };
    }
  ).proto.collector.trace.v1.TraceService.service;
  const spans: ReceivedSpan[] = [];
  const hex = (b: Buffer): string => b.toString('hex');
  const anyValue = (v: WireAnyValue | null | undefined): unknown => (v?.value ? v[v.value] : undefined);
  const server = new grpc.Server();
  server.addService(service, {
    Export: (call: grpc.ServerUnaryCall<ExportRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      for (const rs of call.request.resource_spans) {
        const serviceName = rs.resource.attributes.find((kv) => kv.key === 'service.name');
        for (const ss of rs.scope_spans) {
          for (const span of ss.spans) {
            spans.push({
              traceId: hex(span.trace_id),
              spanId: hex(span.span_id),
              parentSpanId: hex(span.parent_span_id),
              name: span.name,
              kind: span.kind,
              serviceName: anyValue(serviceName?.value) as string | undefined,
              attributes: Object.fromEntries(span.attributes.map((kv) => [kv.key, anyValue(kv.value)])),
              statusCode: span.status?.code ?? 'STATUS_CODE_UNSET',
              links: span.links.map((l) => ({ traceId: hex(l.trace_id), spanId: hex(l.span_id) })),
            });
          }
        }
      }
      callback(null, {});
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

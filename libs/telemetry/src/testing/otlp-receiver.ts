// A minimal OTLP/gRPC trace receiver (what Jaeger or a collector exposes on 4317), built from the
// opentelemetry-proto files in libs/telemetry/test/fixtures, so exported spans are decoded by a
// second party rather than by the exporter's own code.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** One span as the receiver decoded it: ids in hex, enums as their proto names, int64 values as strings. */
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

// The decoded request, as proto-loader gives it (keepCase, enums and int64 as strings, bytes as Buffer).
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

// Two folders up from src/testing/ (or dist/testing/) is the lib's root.
const fixtures = fileURLToPath(new URL('../../test/fixtures', import.meta.url));

export interface OtlpReceiver {
  readonly port: number;
  /** `http://127.0.0.1:<port>`, for `otlpEndpoint` or OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly endpoint: string;
  /** Every span received so far, in arrival order. */
  readonly spans: ReceivedSpan[];
  /** How many Export calls arrived. */
  readonly requests: number;
  stop(): Promise<void>;
}

/** Starts a receiver on 127.0.0.1:0 that answers every trace Export with success. */
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
  const state = { spans: [] as ReceivedSpan[], requests: 0 };
  const hex = (b: Buffer): string => b.toString('hex');
  const anyValue = (v: WireAnyValue | null | undefined): unknown => (v?.value ? v[v.value] : undefined);
  const server = new grpc.Server();
  server.addService(service, {
    Export: (call: grpc.ServerUnaryCall<ExportRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      state.requests += 1;
      for (const rs of call.request.resource_spans) {
        const serviceName = rs.resource.attributes.find((kv) => kv.key === 'service.name');
        for (const ss of rs.scope_spans) {
          for (const span of ss.spans) {
            state.spans.push({
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
    port,
    endpoint: `http://127.0.0.1:${port}`,
    spans: state.spans,
    get requests() {
      return state.requests;
    },
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

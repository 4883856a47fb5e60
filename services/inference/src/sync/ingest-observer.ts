import * as grpc from '@grpc/grpc-js';
import { isSpanContextValid, trace } from '@opentelemetry/api';
import type { monitoring } from '@quanta/contracts';
import type { IngestClient } from '@quanta/monitoring-client';
import type { Tensor } from '@quanta/tensor';
import type { DriftSampler } from './drift-sampler.js';
import { compareOutputs } from '../core/traffic.js';
import type { InferErrorCode, InferObserver, InferRequest, InferResult } from '../core/types.js';

const STATUS: Readonly<Record<InferErrorCode, number>> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  CANCELLED: grpc.status.CANCELLED,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  INTERNAL: grpc.status.INTERNAL,
};

/**
 * The request's trace and span ids (its server span is active when the core calls the observer);
 * empty when untraced.
 */
function traceIds(): { traceId: string; spanId: string } {
  const span = trace.getActiveSpan()?.spanContext();
  if (span === undefined || !isSpanContextValid(span)) return { traceId: '', spanId: '' };
  return { traceId: span.traceId, spanId: span.spanId };
}

/** A shadow copy's comparison with the primary's answer; nothing for other requests or a failed shadow. */
function shadowComparison(
  request: InferRequest,
  result: InferResult | undefined,
): { shadow?: monitoring.ShadowComparison } {
  if (request.route !== 'shadow' || request.primary === undefined || result === undefined) return {};
  const c = compareOutputs(request.primary.outputs, result.outputs);
  return {
    shadow: {
      primaryVersion: request.primary.version,
      maxAbsError: c.maxAbsError,
      top1Rows: c.top1Rows,
      top1AgreedRows: c.top1AgreedRows,
    },
  };
}

/** The bytes a tensor's elements take (BYTES: the elements' lengths, without framing). */
export function tensorBytes(tensor: Tensor): number {
  if (tensor.datatype === 'BYTES') {
    let n = 0;
    for (const element of tensor.data) n += element.byteLength;
    return n;
  }
  return tensor.data.byteLength;
}

export interface IngestObserverOptions {
  readonly client: IngestClient;
  /** The deployment serving (tenant, model), for the record's `deployment`; '' when none. */
  readonly deploymentOf?: (tenant: string, model: string) => string | undefined;
  /** Samples the inputs of successful requests for drift detection (bounded per model, never waits). */
  readonly drift?: DriftSampler;
}

/**
 * An InferObserver that leaves one monitoring InferenceRecord per finished request. It only
 * queues the record (IngestClient.record never blocks or throws): sending happens in batches off
 * the request path, and records are dropped, not waited for, while monitoring is down.
 */
export function createIngestObserver(options: IngestObserverOptions): InferObserver {
  return {
    onRequest(model, request, outcome) {
      try {
        const result = outcome.result;
        const times = result?.times;
        let bytesIn = 0;
        for (const tensor of request.inputs.values()) bytesIn += tensorBytes(tensor);
        let bytesOut = 0;
        for (const tensor of result?.outputs ?? []) bytesOut += tensorBytes(tensor);
        const ids = traceIds();
        options.client.record({
          tenant: model.tenant,
          model: model.name,
          version: result?.version ?? model.version,
          deployment: options.deploymentOf?.(model.tenant, model.name) ?? '',
          requestId: request.id,
          ...ids,
          statusCode: outcome.error === undefined ? grpc.status.OK : STATUS[outcome.error.code],
          queueUs: (times?.queueNs ?? 0n) / 1000n,
          computeUs:
            times === undefined ? 0n : (times.computeInputNs + times.computeInferNs + times.computeOutputNs) / 1000n,
          totalUs: outcome.totalNs / 1000n,
          // Monitoring rejects 0: a request that failed before batching ran alone.
          batchSize: Math.max(1, result?.batchSize ?? 1),
          bytesIn: BigInt(bytesIn),
          bytesOut: BigInt(bytesOut),
          route: request.route ?? 'primary',
          ...shadowComparison(request, result),
          cacheHit: result?.cache === 'hit',
          cacheMiss: result?.cache === 'miss',
          time: new Date(),
        });
        // A shadow copy's inputs are the primary's, already sampled.
        if (options.drift !== undefined && outcome.error === undefined && request.route !== 'shadow')
          options.drift.sample(model, request, options.deploymentOf?.(model.tenant, model.name) ?? '');
      } catch {
        // An observer must not throw into the request path; a record lost here is only a statistic.
      }
    },
  };
}

import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';
import type { Metadata } from '@grpc/grpc-js';

/** Reads W3C `traceparent`/`tracestate`/`baggage` from gRPC metadata (keys are lower case there). */
export const metadataGetter: TextMapGetter<Metadata> = {
  keys: (carrier) => Object.keys(carrier.getMap()),
  get: (carrier, key) => {
    const all = carrier.get(key.toLowerCase());
    // Every server call is asked for traceparent and tracestate: the usual zero or one value makes no array.
    if (all.length <= 1) return typeof all[0] === 'string' ? all[0] : undefined;
    const values = all.filter((v): v is string => typeof v === 'string');
    if (values.length === 0) return undefined;
    return values.length === 1 ? values[0] : values;
  },
};

/** Writes the propagation headers into gRPC metadata, replacing any stale value. */
export const metadataSetter: TextMapSetter<Metadata> = {
  set: (carrier, key, value) => {
    carrier.set(key.toLowerCase(), value);
  },
};

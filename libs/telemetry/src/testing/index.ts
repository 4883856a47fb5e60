// Scaffolding other packages' tests share: an OTLP trace receiver and telemetry that records spans in memory.
export { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './otlp-receiver.js';
export { recordSpans, type RecordedTelemetry } from './spans.js';

export { DDSketch, DEFAULT_RELATIVE_ACCURACY, createMapping } from './core/dd-sketch.js';
export { Aggregate, createWindowStore } from './core/windows.js';
export type { Sample, SecondSpan, Series, WindowStore, WindowStoreOptions } from './core/windows.js';
export { resolveSpan } from './core/span.js';
export type { SpanRequest } from './core/span.js';
export { modelStats, timeSeries, topModels } from './core/queries.js';

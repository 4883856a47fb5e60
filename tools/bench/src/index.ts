export { cpuSeconds, formatRate, markdownTable, opsPerSecond } from './measure.js';

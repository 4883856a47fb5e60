// A strict parser of the Prometheus text exposition format (version 0.0.4), written from
// prometheus.io/docs/instrumenting/exposition_formats: it throws on any line outside the
// grammar, on a sample before its TYPE, on a TYPE given twice, and on a histogram whose buckets
// are not cumulative or whose +Inf bucket differs from its _count. The npm parser used beside
// it merges every labelled histogram series into one, so histograms are read here.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

function parseValue(text: string, line: string): number {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/.test(text)) throw new Error(`bad value "${text}" in: ${line}`);
  return Number(text);
}

function parseSample(line: string): Sample {
  const name = NAME.exec(line)?.[0];
  if (name === undefined) throw new Error(`no metric name: ${line}`);
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    while (line[i] !== '}') {
      const ln = LABEL_NAME.exec(line.slice(i))?.[0];
      if (ln === undefined) throw new Error(`bad label name at ${i}: ${line}`);
      i += ln.length;
      if (line.slice(i, i + 2) !== '="') throw new Error(`expected =" at ${i}: ${line}`);
      i += 2;
      let value = '';
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new Error(`unterminated label value: ${line}`);
        if (c === '"') break;
        if (c === '\\') {
          const e = line[i + 1];
          if (e === 'n') value += '\n';
          else if (e === '\\' || e === '"') value += e;
          else throw new Error(`bad escape \\${e ?? ''}: ${line}`);
          i += 2;
        } else {
          value += c;
          i++;
        }
      }
      i++;
      if (ln in labels) throw new Error(`label ${ln} given twice: ${line}`);
      labels[ln] = value;
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`expected , or } at ${i}: ${line}`);
    }
    i++;
  }
  const rest = line.slice(i);
  const m = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
  if (m === null) throw new Error(`bad value part "${rest}": ${line}`);
  return { name, labels, value: parseValue(m[1] ?? '', line) };
}

export function parsePrometheusStrict(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const families = new Map<string, Family>();
  const familyOf = (sampleName: string): Family | undefined => {
    const exact = families.get(sampleName);
    if (exact !== undefined) return exact;
    const base = /^(.*)_(bucket|sum|count)$/.exec(sampleName)?.[1];
    const f = base === undefined ? undefined : families.get(base);
    return f !== undefined && (f.type === 'histogram' || f.type === 'summary') ? f : undefined;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (type !== null) {
        const [, name = '', t = ''] = type;
        const f = families.get(name);
        if (f !== undefined && f.type !== '') throw new Error(`TYPE of ${name} given twice`);
        if (f !== undefined && f.samples.length > 0) throw new Error(`TYPE of ${name} after its samples`);
        families.set(name, { name, type: t, help: f?.help ?? '', samples: [] });
      } else if (help !== null) {
        const [, name = '', h = ''] = help;
        const f = families.get(name);
        if (f === undefined) families.set(name, { name, type: '', help: h, samples: [] });
        else f.help = h;
      } else if (/^# (HELP|TYPE) /.test(line)) throw new Error(`bad ${line.slice(2, 6)} line: ${line}`);
      continue;
    }
    const s = parseSample(line);
    const f = familyOf(s.name);
    if (f === undefined || f.type === '') throw new Error(`sample before its TYPE: ${line}`);
    f.samples.push(s);
  }
  for (const f of families.values()) {
    if (f.type !== 'histogram') continue;
    const series = new Map<string, Sample[]>();
    for (const s of f.samples) {
      const { le: _le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    for (const [key, samples] of series) {
      const buckets = samples.filter((s) => s.name === `${f.name}_bucket`);
      let last = -1;
      let lastLe = -Infinity;
      for (const b of buckets) {
        const le = parseValue(b.labels['le'] ?? 'x', b.name);
        if (!(le > lastLe)) throw new Error(`${f.name}${key}: buckets out of order at le=${le}`);
        if (b.value < last) throw new Error(`${f.name}${key}: buckets not cumulative at le=${le}`);
        last = b.value;
        lastLe = le;
      }
      const count = samples.find((s) => s.name === `${f.name}_count`)?.value;
      if (lastLe !== Infinity || count !== last)
        throw new Error(`${f.name}${key}: the +Inf bucket must exist and equal _count`);
      if (samples.find((s) => s.name === `${f.name}_sum`) === undefined) throw new Error(`${f.name}${key}: no _sum`);
    }
  }
  return families;
}

// A strict reader of the Prometheus text exposition format (0.0.4) for the metrics tests, written
// from prometheus.io/docs/instrumenting/exposition_formats, apart from prom-client that writes it:
// it throws on a line outside the grammar, a sample before its family's TYPE, a TYPE or HELP given
// twice, and a series (name and labels) given twice, which Prometheus would refuse.

export interface PromSample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PromFamily {
  readonly name: string;
  type: string;
  help: string;
  readonly samples: PromSample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"/;
const VALUE = /^(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN)$/;

function unescape(text: string): string {
  return text.replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest !== '') {
    const match = LABEL.exec(rest);
    if (match === null) throw new Error(`bad labels in: ${line}`);
    const [whole, name = '', value = ''] = match;
    if (name in labels) throw new Error(`label ${name} given twice in: ${line}`);
    labels[name] = unescape(value);
    rest = rest.slice(whole.length);
    if (rest.startsWith(',')) rest = rest.slice(1);
    else if (rest !== '') throw new Error(`expected , between labels in: ${line}`);
  }
  return labels;
}

export function parsePromText(text: string): Map<string, PromFamily> {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const families = new Map<string, PromFamily>();
  const seen = new Set<string>();
  const family = (name: string): PromFamily => {
    let f = families.get(name);
    if (f === undefined) {
      f = { name, type: '', help: '', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    const help = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line);
    const type = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line);
    if (help !== null) {
      const f = family(help[1] ?? '');
      if (f.help !== '') throw new Error(`HELP of ${f.name} given twice`);
      f.help = help[2] ?? '';
      continue;
    }
    if (type !== null) {
      const f = family(type[1] ?? '');
      if (f.type !== '') throw new Error(`TYPE of ${f.name} given twice`);
      if (f.samples.length > 0) throw new Error(`TYPE of ${f.name} after its samples`);
      f.type = type[2] ?? '';
      continue;
    }
    if (line.startsWith('#')) {
      if (/^# (HELP|TYPE) /.test(line)) throw new Error(`bad ${line.slice(2, 6)} line: ${line}`);
      continue;
    }
    const sample = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`).exec(line);
    if (sample === null) throw new Error(`not a sample line: ${line}`);
    const [, name = '', labelText = '', valueText = ''] = sample;
    const f = families.get(name);
    if (f === undefined || f.type === '') throw new Error(`sample before its TYPE: ${line}`);
    if (!VALUE.test(valueText)) throw new Error(`bad value "${valueText}" in: ${line}`);
    const labels = parseLabels(labelText, line);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
    if (seen.has(key)) throw new Error(`series given twice: ${line}`);
    seen.add(key);
    f.samples.push({
      labels,
      value: valueText.endsWith('Inf') ? (valueText.startsWith('-') ? -Infinity : Infinity) : Number(valueText),
    });
  }
  return families;
}

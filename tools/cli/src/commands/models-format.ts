import { registry as pb } from '@quanta/contracts';
import { describeCompression, humanBytes } from './models-report.js';

// How `models` commands print models and versions for people (--json prints the messages instead).

/** A version status without its enum prefix: READY, FAILED... */
export const statusName = (s: pb.VersionStatus): string => pb.versionStatusToJSON(s).replace('VERSION_STATUS_', '');

/** Tags as `k=v,k2` (a tag with an empty value as its key alone). */
export const formatTags = (tags: Readonly<Record<string, string>>): string =>
  Object.entries(tags)
    .map(([k, v]) => (v === '' ? k : `${k}=${v}`))
    .join(',');

export function describeLineage(lineage: pb.Lineage | undefined): string {
  const origin = lineage?.origin;
  if (origin === undefined) return '';
  if (origin.$case === 'sourceUri') return origin.value;
  const p = origin.value;
  const params = Object.entries(p.transformParams).map(([k, v]) => `${k}=${v}`);
  return `${p.transform}${params.length > 0 ? `[${params.join(',')}]` : ''}(${p.model}:${p.version})`;
}

export function describeVersion(v: pb.ModelVersion): string {
  const sig = v.signature;
  const tensor = (t: pb.TensorSignature): string =>
    `${t.name} ${t.datatype}[${t.shape.map((d, i) => (d === -1n ? t.dimNames[i] || '?' : String(d))).join(',')}]`;
  const lines: [string, string][] = [
    ['version', `${v.model}:${v.version}`],
    ['status', statusName(v.status) + (v.statusReason === '' ? '' : ` (${v.statusReason})`)],
    ['aliases', v.aliases.join(', ')],
    ['sha256', v.sha256],
    ['size', humanBytes(v.sizeBytes)],
    ['description', v.description],
    ['tags', formatTags(v.tags)],
    ['lineage', describeLineage(v.lineage)],
    ['inputs', sig?.inputs.map(tensor).join('; ') ?? ''],
    ['outputs', sig?.outputs.map(tensor).join('; ') ?? ''],
    ['opsets', sig?.opsetImports.map((o) => `${o.domain || 'ai.onnx'} ${o.version}`).join(', ') ?? ''],
    ['producer', sig === undefined ? '' : `${sig.producerName} ${sig.producerVersion}`.trim()],
    [
      'parameters',
      sig === undefined
        ? ''
        : `${sig.parameterCount} in ${sig.initializerCount} initializers (${humanBytes(sig.parameterBytes)})`,
    ],
    ['created', `${v.createTime?.toISOString() ?? ''} by ${v.createdBy}`],
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  const text = lines.map(([k, val]) => `${k.padEnd(width)}  ${val}`).join('\n');
  if (v.compression === undefined) return text;
  const parent =
    v.lineage?.origin?.$case === 'parent'
      ? `${v.lineage.origin.value.model}:${v.lineage.origin.value.version}`
      : 'its parent';
  return `${text}\n\ncompression, measured against ${parent}:\n${describeCompression(v.compression)}`;
}

export function describeModel(m: pb.Model): string {
  const lines: [string, string][] = [
    ['name', m.name],
    ['description', m.description],
    ['tags', formatTags(m.tags)],
    ['versions', `${m.versionCount} (latest ${m.latestVersion})`],
    [
      'aliases',
      Object.entries(m.aliases)
        .map(([a, v]) => `${a} → ${v}`)
        .join(', '),
    ],
    ['created', m.createTime?.toISOString() ?? ''],
    ['updated', m.updateTime?.toISOString() ?? ''],
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, val]) => `${k.padEnd(width)}  ${val}`).join('\n');
}

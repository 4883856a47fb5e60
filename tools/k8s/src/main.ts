import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_OVERLAY, overlayDir, RenderError } from './kustomize.js';
import { renderOverlay, writeRendered } from './render.js';

const USAGE = `usage: npm run k8s:render -- --out DIR [--overlay NAME|PATH]
  Renders a kustomize overlay of deploy/kubernetes (default: "${DEFAULT_OVERLAY}") with kubectl, checks
  every object against the Kubernetes schemas, and writes one YAML file per object into DIR.`;

// npm runs scripts from the root; INIT_CWD is where `npm run` was typed, which is what --out means.
const cwd = process.env['INIT_CWD'] ?? process.cwd();

function fail(message: string, code: number): never {
  process.stderr.write(`k8s:render: ${message}\n`);
  process.exit(code);
}

let values: { out?: string; overlay?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    options: { out: { type: 'string' }, overlay: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  }));
} catch (error: unknown) {
  fail(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`, 2);
}
if (values.help === true) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (values.out === undefined || values.out === '') fail(`--out DIR is required\n${USAGE}`, 2);

try {
  const source = overlayDir(values.overlay ?? DEFAULT_OVERLAY, cwd);
  const outDir = resolve(cwd, values.out);
  const rendered = await renderOverlay(source);
  const files = await writeRendered(rendered, outDir, source);
  process.stdout.write(`wrote ${files.length} objects to ${outDir}\n`);
} catch (error: unknown) {
  if (error instanceof RenderError) fail(error.message, 1);
  throw error;
}

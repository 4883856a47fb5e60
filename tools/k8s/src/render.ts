import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { KustomizeOptions } from './kustomize.js';
import { kustomize, MANIFESTS_DIR, RenderError } from './kustomize.js';
import type { RenderedObject } from './manifests.js';
import { describeObject, fileNameOf, parseManifests } from './manifests.js';
import { validateObject } from './schemas.js';

/** The first line of every file render writes: how a later render knows the files it may replace. */
export const RENDERED_HEADER = '# Rendered by `npm run k8s:render`';

/** The overlay at `dir` as objects, each checked against its kind's schema (RenderError when one fails). */
export async function renderOverlay(dir: string, options: KustomizeOptions = {}): Promise<RenderedObject[]> {
  const rendered = parseManifests(await kustomize(dir, options));
  if (rendered.length === 0) throw new RenderError(`${dir} renders no objects`);
  const problems = rendered.flatMap((r) => validateObject(r.object));
  if (problems.length > 0)
    throw new RenderError(
      `${dir}: ${problems.length} object field(s) break the Kubernetes schema: ${problems.join('; ')}`,
    );
  return rendered;
}

/**
 * Writes one YAML file per object into `outDir` (made when missing), named in apply order
 * (fileNameOf). Files an earlier render wrote there are removed first, so that `kubectl apply -f
 * outDir` never applies an object the overlay no longer has; other files are left alone.
 */
export async function writeRendered(
  rendered: readonly RenderedObject[],
  outDir: string,
  source: string,
): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  for (const entry of await readdir(outDir, { withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.yaml')) continue;
    const path = join(outDir, entry.name);
    if ((await readFile(path, 'utf8')).startsWith(RENDERED_HEADER)) await rm(path);
  }
  const from = relative(join(MANIFESTS_DIR, '..', '..'), source) || source;
  const names: string[] = [];
  for (const [i, r] of rendered.entries()) {
    const name = fileNameOf(r.object, i, rendered.length);
    const header = `${RENDERED_HEADER} from ${from} (${describeObject(r.object)}); edit the sources, not this file.\n`;
    await writeFile(join(outDir, name), header + r.yaml);
    names.push(name);
  }
  return names;
}

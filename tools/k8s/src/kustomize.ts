import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** deploy/kubernetes in this checkout. */
export const MANIFESTS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'deploy', 'kubernetes');

/** The overlay `k8s:render` renders unless told otherwise. */
export const DEFAULT_OVERLAY = 'default';

/** A failure to render, with a message of one line that says what to do. */
export class RenderError extends Error {
  override readonly name = 'RenderError';
}

/** An overlay's folder: a name under deploy/kubernetes/overlays, or a path to a kustomization. */
export function overlayDir(overlay: string, cwd: string = process.cwd()): string {
  const named = join(MANIFESTS_DIR, 'overlays', overlay);
  if (/^[a-z0-9][a-z0-9-]*$/.test(overlay) && existsSync(named)) return named;
  const dir = resolve(cwd, overlay);
  if (!existsSync(join(dir, 'kustomization.yaml'))) {
    throw new RenderError(
      `overlay "${overlay}": neither deploy/kubernetes/overlays/${overlay} nor a folder with a kustomization.yaml`,
    );
  }
  return dir;
}

export interface KustomizeOptions {
  /** The kubectl to run; default $KUBECTL, else `kubectl` on PATH. */
  readonly kubectl?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * `kubectl kustomize DIR`: the overlay rendered as one YAML stream, offline (kubectl's built-in
 * kustomize reads only local files and contacts no cluster).
 */
export function kustomize(dir: string, options: KustomizeOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const kubectl = options.kubectl ?? (env['KUBECTL'] || 'kubectl');
  return new Promise((resolvePromise, reject) => {
    execFile(kubectl, ['kustomize', dir], { env, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) {
        resolvePromise(stdout);
        return;
      }
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(
          new RenderError(
            'kubectl (1.27 or later, with its built-in kustomize) renders the manifests, ' +
              `and "${kubectl}" was not found; install kubectl or set KUBECTL to its path`,
          ),
        );
        return;
      }
      const why =
        stderr
          .trim()
          .split('\n')
          .filter((l) => l.trim() !== '')
          .pop() ?? error.message;
      reject(new RenderError(`${kubectl} kustomize ${dir} failed: ${why}`));
    });
  });
}

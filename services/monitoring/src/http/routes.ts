import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError } from '@quanta/service-kit';
import { setHttpRoute } from '@quanta/telemetry';
import type { AlertEngine } from '../core/alerts.js';
import type { DriftEngine } from '../core/drift.js';
import type { HealthBoard } from '../core/health-board.js';
import type { WindowStore } from '../core/window-store.js';
import type { HttpAccess } from './http-auth.js';
import { viewOf } from './http-auth.js';
import { buildOverview } from './overview.js';
import type { PromMetrics } from './prometheus.js';

export interface RouteDeps extends HttpAccess {
  readonly store: WindowStore;
  readonly alerts: AlertEngine;
  readonly board: HealthBoard;
  readonly metrics: PromMetrics;
  /** Drift baselines: the dashboard's drift table (none without it). */
  readonly drift?: DriftEngine | undefined;
  /** The dashboard document, read once at start. */
  readonly page: string;
}

/** The pages served, which name their spans (anything else is one 404 span name). */
const PAGES = new Set(['/', '/index.html', '/metrics', '/api/overview', '/healthz']);

function intParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max)
    throw new HttpError(400, `${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  return v;
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/**
 * The listener's pages: the dashboard, /metrics, /api/overview and /healthz, GET or HEAD only.
 * A request it refuses throws an HttpError, which the server sends.
 */
export function createRoutes(deps: RouteDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      throw new HttpError(400, `the request target ${JSON.stringify(req.url)} is not a valid URL`);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD')
      throw new HttpError(405, `${req.method ?? '?'} is not allowed; use GET`);
    if (PAGES.has(url.pathname)) setHttpRoute(req.method, url.pathname);
    switch (url.pathname) {
      case '/':
      case '/index.html':
        return send(res, 200, 'text/html; charset=utf-8', deps.page);
      case '/metrics': {
        const view = await viewOf(req, url, deps);
        const body = deps.metrics.render(view.tenant === undefined ? {} : { tenant: view.tenant });
        return send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', body);
      }
      case '/api/overview': {
        const view = await viewOf(req, url, deps);
        const windowSeconds = intParam(url, 'window', 300, 10, deps.store.horizonSeconds);
        const stepSeconds = intParam(url, 'step', Math.max(1, Math.floor(windowSeconds / 60)), 1, windowSeconds);
        if (windowSeconds / stepSeconds > 3600) throw new HttpError(400, 'window / step gives more than 3600 points');
        const overview = buildOverview(deps, { tenant: view.tenant, windowSeconds, stepSeconds });
        return send(res, 200, 'application/json', JSON.stringify(overview));
      }
      case '/healthz':
        return send(res, 200, 'text/plain', 'ok\n');
      default:
        throw new HttpError(404, `no page at ${url.pathname}; try /, /metrics or /api/overview`);
    }
  };
}

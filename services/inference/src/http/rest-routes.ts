// The KServe v2 REST routes: each path, the methods it takes, the scope each needs (health and
// server metadata are public), and its handler over the InferenceApi.
import type { Principal, Scope } from '@quanta/service-kit';
import { HttpError, unauthenticated } from '@quanta/service-kit';
import type { CancelSignal } from '../core/types.js';
import type { InferenceApi } from '../server/inference-api.js';
import type { Body } from './rest-body.js';
import {
  decodeIndexRequest,
  decodeJsonInfer,
  decodeRepositoryParameters,
  encodeJsonIndex,
  encodeJsonInfer,
  encodeJsonMetadata,
  encodeJsonModelConfig,
  encodeJsonStats,
  splitInferBody,
} from './rest-convert.js';
import type { Reply } from './rest-reply.js';

type Method = 'GET' | 'POST';

interface RouteSpec {
  readonly method: Method;
  /** The scope needed, or public. */
  readonly scope: Scope | 'public';
  handle(match: RegExpExecArray, principal: Principal | undefined, body: Body, signal: CancelSignal): Promise<Reply>;
}

export interface Route extends RouteSpec {
  /** The low-cardinality path template the request's span is named after. */
  readonly template: string;
}

/** Each path pattern with the routes (one per method) it takes. */
export type RouteTable = readonly (readonly [RegExp, readonly Route[]])[];

const segment = '([^/]+)';
const modelPath = `/v2/models/${segment}(?:/versions/${segment})?`;

function decode(part: string | undefined): string {
  if (part === undefined) return '';
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HttpError(400, `"${part}" is not a valid URL path segment`);
  }
}

function tenant(principal: Principal | undefined): string {
  if (principal === undefined) throw unauthenticated('a bearer token is needed');
  return principal.tenant;
}

export function restRoutes(api: InferenceApi): RouteTable {
  const table: [string, RouteSpec[]][] = [
    ['/v2/health/live', [{ method: 'GET', scope: 'public', handle: () => Promise.resolve({ body: { live: true } }) }]],
    [
      '/v2/health/ready',
      [
        {
          method: 'GET',
          scope: 'public',
          handle: () =>
            Promise.resolve(
              api.ready()
                ? { body: { ready: true } }
                : {
                    status: 503,
                    body: { ready: false, error: 'the replica is not serving every model it is meant to yet' },
                  },
            ),
        },
      ],
    ],
    ['/v2/?', [{ method: 'GET', scope: 'public', handle: () => Promise.resolve({ body: api.serverMetadata() }) }]],
    [
      '/v2/models/stats',
      [
        {
          method: 'GET',
          scope: 'models:read',
          handle: (_m, p) =>
            Promise.resolve({ body: { model_stats: api.stats(tenant(p), '', '').map(encodeJsonStats) } }),
        },
      ],
    ],
    [
      modelPath,
      [
        {
          method: 'GET',
          scope: 'models:read',
          handle: (m, p) =>
            Promise.resolve({ body: encodeJsonMetadata(api.modelMetadata(tenant(p), decode(m[1]), decode(m[2]))) }),
        },
      ],
    ],
    [
      `${modelPath}/config`,
      [
        {
          method: 'GET',
          scope: 'models:read',
          handle: (m, p) =>
            Promise.resolve({ body: encodeJsonModelConfig(api.modelConfig(tenant(p), decode(m[1]), decode(m[2]))) }),
        },
      ],
    ],
    [
      `${modelPath}/ready`,
      [
        {
          method: 'GET',
          scope: 'models:read',
          handle: (m, p) => {
            const name = decode(m[1]);
            const ready = api.modelReady(tenant(p), name, decode(m[2]));
            return Promise.resolve(
              ready
                ? { body: { name, ready } }
                : { status: 503, body: { name, ready, error: `model "${name}" is not ready` } },
            );
          },
        },
      ],
    ],
    [
      `${modelPath}/stats`,
      [
        {
          method: 'GET',
          scope: 'models:read',
          handle: (m, p) =>
            Promise.resolve({
              body: { model_stats: api.stats(tenant(p), decode(m[1]), decode(m[2])).map(encodeJsonStats) },
            }),
        },
      ],
    ],
    [
      `${modelPath}/infer`,
      [
        {
          method: 'POST',
          scope: 'infer',
          handle: async (m, p, body, signal) => {
            const { request, binaryOutputs } = decodeJsonInfer(
              splitInferBody(await body.bytes(), body.header('inference-header-content-length')),
              signal,
            );
            const { json, binary } = encodeJsonInfer(
              // The caller within the tenant, for the deployment's caller limits.
              await api.infer(tenant(p), decode(m[1]), decode(m[2]), { ...request, caller: p?.subject ?? '' }),
              binaryOutputs,
            );
            return { body: json, binary };
          },
        },
      ],
    ],
    [
      '/v2/repository/index',
      [
        {
          method: 'POST',
          scope: 'models:read',
          handle: async (_m, p, body) => ({
            body: encodeJsonIndex(api.index(tenant(p), decodeIndexRequest(await body()))),
          }),
        },
      ],
    ],
    [
      `/v2/repository/models/${segment}/load`,
      [
        {
          method: 'POST',
          scope: 'models:write',
          handle: async (m, p, body) => {
            await api.load(tenant(p), decode(m[1]), decodeRepositoryParameters(await body()));
            return { body: {} };
          },
        },
      ],
    ],
    [
      `/v2/repository/models/${segment}/unload`,
      [
        {
          method: 'POST',
          scope: 'models:write',
          handle: async (m, p, body) => {
            const parameters = decodeRepositoryParameters(await body());
            await api.unload(tenant(p), decode(m[1]), parameters['unload_dependents'] === 'true');
            return { body: {} };
          },
        },
      ],
    ],
  ];
  return table.map(([pattern, specs]) => {
    const template = routeTemplate(pattern);
    return [new RegExp(`^${pattern}$`), specs.map((spec) => ({ ...spec, template }))] as const;
  });
}

/**
 * A route's pattern as the low-cardinality template its spans are named after:
 * `/v2/models/{model}[/versions/{version}]/infer`.
 */
function routeTemplate(pattern: string): string {
  return pattern
    .replace(modelPath, '/v2/models/{model}[/versions/{version}]')
    .replace(segment, '{model}')
    .replace('/v2/?', '/v2');
}

/**
 * The route for `method` on `pathname` and the path's match; 404 when no route has the path,
 * 405 (with `Allow`) when none of its routes takes the method.
 */
export function findRoute(
  table: RouteTable,
  method: string | undefined,
  pathname: string,
): { route: Route; match: RegExpExecArray } {
  const entry = table.find(([pattern]) => pattern.test(pathname));
  if (entry === undefined) throw new HttpError(404, `no such endpoint: ${method ?? ''} ${pathname}`);
  const [pattern, candidates] = entry;
  const route = candidates.find((r) => r.method === method);
  if (route === undefined) {
    const methods = candidates.map((r) => r.method);
    throw new HttpError(405, `${pathname} takes ${methods.join(' or ')}, not ${method ?? ''}`, {
      allow: methods.join(', '),
    });
  }
  return { route, match: pattern.exec(pathname)! };
}

import * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { health } from '@quanta/contracts';
import type { Telemetry } from '@quanta/telemetry';
import { createServerInterceptor } from '@quanta/telemetry';
import type { Logger } from 'pino';
import type { AccessTable } from './access.js';
import { accessTableProblems } from './access.js';
import type { Authenticator } from './auth.js';
import type { HandlerRuntime } from './call-context.js';
import { createCallRegistry } from './call-context.js';
import { unavailable } from './errors.js';
import { DEFAULT_FLOW_CONTROL_WINDOW, widenFlowControlWindows } from './flow-control.js';
import { bindHandler, handlerKind, handlerScope } from './handlers.js';
import type { HealthStatus } from './health.js';
import { createHealthRegistry } from './health.js';
import { defaultLogger } from './logger.js';
import { addReflection } from './reflection.js';
import type { ServerTlsOptions } from './tls.js';
import { serverCredentials } from './tls.js';

export const DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH = 4 * 1024 * 1024; // grpc-js's own default
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/**
 * A signal this soon after the first one is the same request, not a second: a terminal's Ctrl-C
 * reaches every process of its foreground group, so a service run through npm or a supervisor that
 * forwards signals gets it twice. A signal after the window forces the exit.
 */
export const REPEATED_SIGNAL_WINDOW_MS = 1000;

export interface ServiceOptions {
  /** Service name for logs and telemetry, e.g. `crypto`. */
  readonly name: string;
  readonly version?: string;
  /** Listen address; default 127.0.0.1 (use 0.0.0.0 or :: in a container). */
  readonly host?: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  /** Needed by every handler whose scope is not `public`; without it they answer UNAUTHENTICATED. */
  readonly authenticator?: Authenticator;
  /** Its tracer and meter feed the server interceptor, its logger the service; flushed on stop. */
  readonly telemetry?: Telemetry;
  /** Default: telemetry's logger, else a service-kit logger. */
  readonly logger?: Logger;
  /** TLS (and mTLS with caFile + requireClientCert); plaintext when omitted. */
  readonly tls?: ServerTlsOptions;
  /** Largest request message in bytes; default 4 MiB like grpc-js. */
  readonly maxReceiveMessageLength?: number;
  /** Largest response message in bytes; default unlimited like grpc-js. */
  readonly maxSendMessageLength?: number;
  /** How long `stop()` lets in-flight calls run before cancelling them; default 10 s. */
  readonly shutdownGraceMs?: number;
  /**
   * The HTTP/2 receive window of each stream (bytes; the connection's is 4×); default 1 MiB. 65,535
   * or less keeps HTTP/2's own 64 KiB, where grpc-js leaves it (see widenFlowControlWindows).
   */
  readonly flowControlWindow?: number;
  /** Descriptors of services outside proto/ (tests, plugins), so reflection can describe them too. */
  readonly reflectionPackages?: readonly PackageDefinition[];
  /** Further grpc-js server options (keepalive, …). */
  readonly serverOptions?: Omit<grpc.ServerOptions, 'interceptors'>;
  /** Further grpc-js server interceptors, run after telemetry's. */
  readonly interceptors?: readonly grpc.ServerInterceptor[];
}

export interface QuantaService {
  readonly name: string;
  readonly logger: Logger;
  /** The underlying grpc-js server, for what this kit does not cover. */
  readonly server: grpc.Server;
  /**
   * Registers a service whose every method is made with `unary`/`serverStreaming`/`clientStreaming`/
   * `bidiStreaming`. `access` is the service's access matrix: every method of `definition` must
   * have a rule in it (else this throws, naming the method), and each call is checked against its
   * rule before the handler runs. Without `access`, each handler must declare its own scope. It
   * reports SERVING in health once started.
   */
  addService(
    definition: grpc.ServiceDefinition,
    implementation: grpc.UntypedServiceImplementation,
    access?: AccessTable,
  ): void;
  readonly health: { set(service: string, status: HealthStatus): void; get(service: string): HealthStatus | undefined };
  /** Runs on stop after the server has closed (close stores, pools), in registration order. */
  onStop(hook: () => Promise<void> | void): void;
  /**
   * Binds; registers health and reflection; marks every service and "" SERVING. Calling it again
   * returns the same promise.
   */
  start(): Promise<{ port: number; address: string }>;
  /**
   * NOT_SERVING in health, stop accepting calls, let in-flight calls finish within `graceMs`, then
   * cancel what is left; run the onStop hooks; flush telemetry. Calling it again returns the same promise.
   */
  stop(options?: { graceMs?: number }): Promise<void>;
  /**
   * SIGTERM/SIGINT → stop(), shut telemetry down, exit 0. A second signal within
   * REPEATED_SIGNAL_WINDOW_MS of the first is the same request; a later one exits 130 at once.
   * Started with an IPC channel (the dev stack does so), the loss of that channel (its parent gone)
   * is a SIGTERM.
   */
  handleSignals(): void;
}

/** `pkg.Service` from the first method's path `/pkg.Service/Method`. */
function serviceNameOf(definition: grpc.ServiceDefinition): string {
  const first = Object.values(definition)[0];
  const match = first === undefined ? null : /^\/([^/]+)\/[^/]+$/.exec(first.path);
  if (match?.[1] === undefined) throw new Error('addService: the service definition has no methods');
  return match[1];
}

function kindOf(method: grpc.MethodDefinition<unknown, unknown>): string {
  if (method.requestStream) return method.responseStream ? 'bidi' : 'clientStream';
  return method.responseStream ? 'serverStream' : 'unary';
}

const ADAPTER: Record<string, string> = {
  unary: 'unary',
  serverStream: 'serverStreaming',
  clientStream: 'clientStreaming',
  bidi: 'bidiStreaming',
};

export function createService(options: ServiceOptions): QuantaService {
  const logger = (options.logger ?? options.telemetry?.logger ?? defaultLogger).child({ service: options.name });
  const host = options.host ?? '127.0.0.1';
  const graceDefault = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  const shutdown = new AbortController();
  const runtime: HandlerRuntime = {
    authenticator: options.authenticator,
    logger,
    calls: createCallRegistry(),
    shutdown: shutdown.signal,
  };
  const healthRegistry = createHealthRegistry();
  const served: string[] = [];
  const hooks: (() => Promise<void> | void)[] = [];
  let started = false;
  let starting: Promise<{ port: number; address: string }> | undefined;
  let stopping: Promise<void> | undefined;

  const telemetryInterceptor = createServerInterceptor(
    options.telemetry === undefined ? {} : { tracer: options.telemetry.tracer, meter: options.telemetry.meter },
  );
  const server = new grpc.Server({
    ...options.serverOptions,
    interceptors: [telemetryInterceptor, ...(options.interceptors ?? [])],
    'grpc.max_receive_message_length': options.maxReceiveMessageLength ?? DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH,
    ...(options.maxSendMessageLength === undefined
      ? {}
      : { 'grpc.max_send_message_length': options.maxSendMessageLength }),
  });

  const addService = (
    definition: grpc.ServiceDefinition,
    implementation: grpc.UntypedServiceImplementation,
    access?: AccessTable,
  ): void => {
    if (starting !== undefined) throw new Error('addService: call it before start()');
    const serviceName = serviceNameOf(definition);
    if (access !== undefined) {
      const problems = accessTableProblems(definition, access);
      if (problems.length > 0) throw new Error(`addService ${serviceName}: ${problems.join('; ')}`);
    }
    const bound: grpc.UntypedServiceImplementation = {};
    for (const [key, method] of Object.entries(definition)) {
      const handler =
        implementation[key] ?? (method.originalName === undefined ? undefined : implementation[method.originalName]);
      if (handler === undefined) continue; // grpc-js answers UNIMPLEMENTED
      const where = method.path.slice(1);
      const kind = handlerKind(handler);
      if (kind === undefined) {
        throw new Error(
          `${where}: wrap the handler in ${ADAPTER[kindOf(method)]}({ scope }, fn) so that it declares its scope`,
        );
      }
      if (kind !== kindOf(method)) {
        throw new Error(`${where} is ${ADAPTER[kindOf(method)]} but its handler was made with ${ADAPTER[kind]}()`);
      }
      const declared = handlerScope(handler);
      const rule = access?.[method.path];
      if (rule !== undefined && declared !== undefined && declared !== rule.scope) {
        throw new Error(
          `${where}: its handler declares scope "${declared}" ` +
            `but the access table says "${rule.scope}"; keep the scope in the table only`,
        );
      }
      const scope = rule?.scope ?? declared;
      if (scope === undefined)
        throw new Error(`${where}: no scope declared; pass the service's access table to addService`);
      const boundHandler = bindHandler(handler, runtime, scope);
      if (boundHandler !== undefined) bound[key] = boundHandler;
    }
    server.addService(definition, bound);
    served.push(serviceName);
  };

  const stop = (stopOptions: { graceMs?: number } = {}): Promise<void> => {
    stopping ??= (async () => {
      const graceMs = stopOptions.graceMs ?? graceDefault;
      logger.info({ in_flight: runtime.calls.size, grace_ms: graceMs }, 'shutting down');
      healthRegistry.shutdown();
      healthRegistry.endWatches();
      shutdown.abort(unavailable(`${options.name} is shutting down`));
      // A stop during start waits for the bind, so that no server is left listening.
      await starting?.catch(() => undefined);
      if (started) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            logger.warn({ in_flight: runtime.calls.size }, `calls still running after ${graceMs} ms: cancelling them`);
            runtime.calls.abortAll(unavailable(`${options.name} is shutting down`));
            server.forceShutdown();
            resolve();
          }, graceMs);
          server.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      for (const hook of hooks) {
        try {
          await hook();
        } catch (error: unknown) {
          logger.error({ err: error }, 'an onStop hook failed');
        }
      }
      await options.telemetry?.forceFlush();
      logger.info('stopped');
    })();
    return stopping;
  };

  return {
    name: options.name,
    logger,
    server,
    addService,
    health: {
      set: (service, status) => healthRegistry.set(service, status),
      get: (service) => healthRegistry.get(service),
    },
    onStop: (hook) => void hooks.push(hook),
    start() {
      if (stopping !== undefined) return Promise.reject(new Error('start: the service was stopped'));
      starting ??= (async () => {
        const credentials = await serverCredentials(options.tls);
        started = true;
        server.addService(health.HealthService, healthRegistry.implementation);
        addReflection(server, [...served, 'grpc.health.v1.Health'], options.reflectionPackages);
        const bindHost = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
        const port = await new Promise<number>((resolve, reject) => {
          server.bindAsync(`${bindHost}:${options.port}`, credentials, (error, boundPort) => {
            if (error === null) {
              // Before the first connection's session can be made (it comes from a later poll).
              widenFlowControlWindows(server, options.flowControlWindow ?? DEFAULT_FLOW_CONTROL_WINDOW, logger);
              resolve(boundPort);
            } else
              reject(
                new Error(`${options.name}: cannot listen on ${bindHost}:${options.port}: ${error.message}`, {
                  cause: error,
                }),
              );
          });
        });
        for (const service of served) healthRegistry.set(service, 'SERVING');
        healthRegistry.set('', 'SERVING');
        const address = `${bindHost}:${port}`;
        logger.info(
          { address, tls: options.tls !== undefined, services: served },
          `${options.name} listening on ${address}`,
        );
        return { port, address };
      })();
      return starting;
    },
    stop,
    handleSignals() {
      let firstSignalAt: number | undefined;
      let orphaned = false;
      const exit = (code: number): never => {
        // An orphan's stdout and stderr are most likely pipes to the parent that is gone: pino's
        // flush at exit would retry a line it still holds on them forever (sonic-boom retries any
        // failed write in flushSync). Nobody reads that output, nor this exit status, any more.
        if (orphaned) process.kill(process.pid, 'SIGKILL');
        return process.exit(code);
      };
      const onSignal = (signal: NodeJS.Signals): void => {
        const now = performance.now();
        if (firstSignalAt !== undefined) {
          if (now - firstSignalAt < REPEATED_SIGNAL_WINDOW_MS) {
            logger.info({ signal }, 'signal repeated: already stopping');
            return;
          }
          logger.warn({ signal }, 'second signal: exiting now');
          exit(130);
        }
        firstSignalAt = now;
        logger.info({ signal }, 'signal received');
        stop()
          .then(() => options.telemetry?.shutdown())
          .then(
            () => exit(0),
            (error: unknown) => {
              logger.error({ err: error }, 'shutdown failed');
              exit(1);
            },
          );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      // A parent that runs its services in process groups of their own (so that a terminal's Ctrl-C
      // reaches only the parent) can die without passing a signal on; its IPC channel closes then,
      // whatever killed it. Sent as a SIGTERM, so that the SIGTERM listeners of main.ts run too.
      if (process.send !== undefined) {
        const parentGone = (): void => {
          orphaned = true;
          logger.warn('parent process gone: stopping');
          process.kill(process.pid, 'SIGTERM');
        };
        // The channel (null once closed, whatever its type says) may have closed before this ran.
        if (process.connected) {
          process.channel?.unref();
          process.once('disconnect', parentGone);
        } else {
          parentGone();
        }
      }
    },
  };
}

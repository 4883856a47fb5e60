import type * as http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';

/** The HTTP/2 receive window of each stream a service's connections open (bytes); the connection's is 4×. */
export const DEFAULT_FLOW_CONTROL_WINDOW = 1 << 20;

/** HTTP/2's own initial window (RFC 9113 §6.9.2), what grpc-js servers keep. */
const HTTP2_DEFAULT_WINDOW = 65_535;

/** The largest window HTTP/2 allows. */
export const HTTP2_MAX_WINDOW = 2 ** 31 - 1;

/**
 * Widens the HTTP/2 flow-control windows of a bound grpc-js server's connections: each new session
 * announces `streamWindow` as its streams' initial window (SETTINGS_INITIAL_WINDOW_SIZE) and opens its
 * connection window to 4× that.
 *
 * Why: grpc-js leaves both at HTTP/2's 64 KiB and, unlike gRPC's C core (which grows them by BDP
 * probing), never widens them. A request larger than 64 KiB then stops half-way on every call until
 * the server's WINDOW_UPDATE comes back, which costs latency and server CPU on every large request
 * (figures: docs/decisions/service-kit-flow-control-windows.md). The window only lets a client send
 * ahead: grpc-js reads every message anyway, and `maxReceiveMessageLength` still bounds each one.
 *
 * grpc-js has no option for this, so its http2 servers are reached through its private
 * `http2Servers` map; with a grpc-js without it, nothing changes and a warning says so.
 */
export function widenFlowControlWindows(server: grpc.Server, streamWindow: number, logger: Logger): void {
  if (streamWindow <= HTTP2_DEFAULT_WINDOW) return;
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map)) {
    logger.warn('this grpc-js keeps its http2 servers elsewhere: HTTP/2 flow-control windows stay at 64 KiB');
    return;
  }
  const stream = Math.min(streamWindow, HTTP2_MAX_WINDOW);
  const connection = Math.min(stream * 4, HTTP2_MAX_WINDOW);
  for (const http2Server of servers.keys() as IterableIterator<http2.Http2Server | http2.Http2SecureServer>) {
    if ((http2Server as { [widened]?: boolean })[widened] === true) continue;
    (http2Server as { [widened]?: boolean })[widened] = true;
    http2Server.on('session', (session: http2.ServerHttp2Session) => {
      try {
        session.settings({ initialWindowSize: stream });
        session.setLocalWindowSize(connection);
      } catch (error: unknown) {
        // A session that is already closing: nothing to widen.
        logger.debug({ err: error }, 'could not widen an HTTP/2 session’s flow-control windows');
      }
    });
  }
}

const widened = Symbol('quanta.flowControlWidened');

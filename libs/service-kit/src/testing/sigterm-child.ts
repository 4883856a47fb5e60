// Test support, run as a child process by shutdown.test.ts: a service whose Echo call, when asked
// to hold, finishes only after the process got SIGTERM or SIGINT (with the text "forever": never,
// so that the graceful stop waits out its grace). Prints "READY <port>", "HELD", "ONSTOP" and
// "SPAN <name>" for each span exported (spans are batched: they come out only when flushed).
import { once } from 'node:events';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { initTelemetry } from '@quanta/telemetry';
import { unary } from '../handlers.js';
import { createService } from '../service.js';
import type { EchoReply, EchoRequest } from './echo.js';
import { echoService } from './echo.js';

const terminated = Promise.race([once(process, 'SIGTERM'), once(process, 'SIGINT')]);
const printingExporter: SpanExporter = {
  export(spans: ReadableSpan[], done) {
    for (const span of spans) process.stdout.write(`SPAN ${span.name}\n`);
    done({ code: 0 });
  },
  shutdown: () => Promise.resolve(),
};
const telemetry = initTelemetry({ serviceName: 'sigterm-child', spanExporter: printingExporter });
const service = createService({ name: 'sigterm-child', port: 0, shutdownGraceMs: 10_000, telemetry });
service.addService(echoService, {
  Echo: unary<EchoRequest, EchoReply>({ scope: 'public' }, async (req) => {
    if (req.hold) {
      process.stdout.write('HELD\n');
      await (req.text === 'forever' ? new Promise<never>(() => undefined) : terminated);
    }
    return { text: `${req.text} finished`, index: 0, payload: Buffer.alloc(0), tenant: '' };
  }),
});
service.onStop(() => void process.stdout.write('ONSTOP\n'));
service.handleSignals();
const { port } = await service.start();
process.stdout.write(`READY ${port}\n`);

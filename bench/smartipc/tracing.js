// Loaded with --import into every smartipc child under `bench/run.js --trace`: a no-op subscriber on
// every smartipc diagnostics channel, so the bench shows what an attached tracer (an APM agent)
// costs: context objects built and published on each request, handler, stream and message.
import diagnosticsChannel from 'node:diagnostics_channel';

const noop = () => undefined;
const handlers = { start: noop, end: noop, asyncStart: noop, asyncEnd: noop, error: noop };
for (const name of ['smartipc:request', 'smartipc:handle', 'smartipc:stream']) {
  diagnosticsChannel.tracingChannel(name).subscribe(handlers);
}
for (const name of ['smartipc:connect', 'smartipc:disconnect', 'smartipc:message', 'smartipc:publish', 'smartipc:deadLetter']) {
  diagnosticsChannel.subscribe(name, noop);
}

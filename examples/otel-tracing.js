// smartipc's diagnostics_channel tracing turned into OpenTelemetry-shaped spans, with no dependency.
//
//   npm run build && node examples/otel-tracing.js
//
// A real exporter would hand these objects to @opentelemetry/api (tracer.startSpan / span.end) or
// to an OTLP exporter; here they are printed. What it shows:
//   - smartipc:request (caller side) -> a CLIENT span; its `start` subscriber writes a W3C
//     `traceparent` into ctx.headers, which travels with the request (through the hub, too);
//   - smartipc:handle (handler side) -> a SERVER span whose parent is read from that traceparent;
//   - the handler's span is made the active span for the handler's async context (bindStore), so
//     calls the handler makes become its children: gateway -> order -> user is one trace.
// Everything runs in this one process (a hub and three clients) and exits by itself.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmartIpc } from '../dist_ts/index.js';

// ---- the tracer: ~60 lines that an OpenTelemetry SDK would otherwise provide -----------------

const activeSpan = new AsyncLocalStorage();
const spans = new WeakMap(); // trace context object -> span
const finished = [];

const hex = (bytes) => randomBytes(bytes).toString('hex');
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

function startSpan(name, kind, parent, ctx, side) {
  return {
    traceId: parent?.traceId ?? hex(16),
    spanId: hex(8),
    parentSpanId: parent?.spanId,
    name,
    kind,
    startTime: Date.now(),
    startedAt: performance.now(),
    attributes: {
      'rpc.system': 'smartipc',
      ...(ctx.service !== undefined ? { 'rpc.service': ctx.service, 'rpc.method': ctx.method } : { 'smartipc.type': ctx.type }),
      [side === 'client' ? 'server.address' : 'client.id']: ctx.peerId,
    },
  };
}

function endSpan(span, ctx) {
  const { startedAt, ...rest } = span;
  const done = {
    ...rest,
    duration: `${(performance.now() - startedAt).toFixed(3)} ms`,
    attributes: { ...span.attributes, 'smartipc.id': ctx.id, 'smartipc.bytes': ctx.bytes },
    status: ctx.error === undefined ? { code: 'OK' } : { code: 'ERROR', message: `${ctx.error.code ?? ctx.error.name}: ${ctx.error.message}` },
  };
  finished.push(done);
  console.log(done);
}

/** A span name: `service.method` for calls, the message type for requests. */
const nameOf = (ctx) => (ctx.service !== undefined ? `${ctx.service}/${ctx.method}` : ctx.type);

// Caller side. `start` runs before the request is encoded: the traceparent written here is sent.
const requestChannel = diagnostics_channel.tracingChannel('smartipc:request');
requestChannel.subscribe({
  start(ctx) {
    const span = startSpan(nameOf(ctx), 'CLIENT', activeSpan.getStore(), ctx, 'client');
    spans.set(ctx, span);
    ctx.headers.traceparent = `00-${span.traceId}-${span.spanId}-01`;
  },
  end() {},
  asyncStart() {},
  asyncEnd(ctx) {
    const span = spans.get(ctx);
    if (span) endSpan(span, ctx);
  },
  error() {},
});

// Handler side. bindStore runs before the handler and makes its span the active one for
// everything the handler awaits: nested requests and calls find their parent there.
const handleChannel = diagnostics_channel.tracingChannel('smartipc:handle');
handleChannel.start.bindStore(activeSpan, (ctx) => {
  // A hub passing a call on to the instance that provides it is routing, not a handler: no span
  // (the provider's span is the caller's child directly, through the forwarded traceparent).
  if (ctx.type.includes('\u0000')) return activeSpan.getStore();
  const match = TRACEPARENT.exec(String(ctx.headers.traceparent ?? ''));
  const parent = match ? { traceId: match[1], spanId: match[2] } : undefined;
  const span = startSpan(nameOf(ctx), 'SERVER', parent, ctx, 'server');
  spans.set(ctx, span);
  return span;
});
handleChannel.subscribe({
  start() {},
  end() {},
  asyncStart() {},
  asyncEnd(ctx) {
    const span = spans.get(ctx);
    if (span) endSpan(span, ctx);
  },
  error() {},
});

// ---- the application: a hub, two services and a gateway that calls them ----------------------

const socketPath = join(tmpdir(), `smartipc-otel-${process.pid}.sock`);
const hub = SmartIpc.createServer({ id: 'shop', socketPath, autoCleanupSocketFile: true });
hub.onMessage('health', () => 'ok');
await hub.start();

const connect = async (clientId) => {
  const client = SmartIpc.createClient({ id: 'shop', socketPath, clientOnly: true, clientId });
  await client.connect();
  return client;
};
const [userSvc, orderSvc, gateway] = await Promise.all(['user-svc', 'order-svc', 'gateway'].map(connect));

await userSvc.provide('user', { get: ({ id }) => ({ id, name: 'Ada' }) });
await orderSvc.provide('order', {
  // Called inside this method: a child span of order/place, in the same trace.
  place: async ({ userId, item }) => ({ item, buyer: (await orderSvc.call('user', 'get', { id: userId })).name }),
});

console.log('--- a plain request: one CLIENT span, one SERVER span');
await gateway.request('health');
console.log('--- a call with a nested call: gateway -> order -> user, one trace');
console.log('result:', await gateway.call('order', 'place', { userId: 'u1', item: 'book' }));
console.log('--- a failing call: the span carries the error');
await gateway.call('order', 'cancel').catch(() => {});

await Promise.all([userSvc, orderSvc, gateway].map((client) => client.disconnect()));
await hub.stop();

const traces = new Set(finished.map((span) => span.traceId));
console.log(`${finished.length} spans in ${traces.size} traces`);

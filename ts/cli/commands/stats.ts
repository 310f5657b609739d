// stats: the server's getStats() and its connected clients, from its introspection answer.
import type { ICommand } from '../cli.command.js';
import { EXIT_OK } from '../cli.errors.js';
import { formatAgo, formatBytes, formatCount, formatDuration, formatFields, formatTable, formatTimeAgo, formatValue, type Painter } from '../cli.format.js';
import { STATS_REQUEST, introspect, type IIntrospectedStats } from '../cli.introspection.js';

const KNOWN_METRICS = new Set(['messagesSent', 'messagesReceived', 'bytesSent', 'bytesReceived', 'requestsInFlight', 'errors']);

function num(value: unknown): number {
  return typeof value === 'number' ? value : NaN;
}

/** The stats for people: the known counters on named lines, anything newer listed after them. */
export function renderStats(answer: IIntrospectedStats, painter: Painter, now = Date.now()): string {
  const stats = answer.stats ?? {};
  const metrics = stats.metrics ?? {};
  const fields: Array<[string, string]> = [
    ['server', painter.paint('bold', answer.id)],
    ['running', `${stats.isRunning === false ? painter.paint('red', 'no') : painter.paint('green', 'yes')}${stats.uptime ? `, up ${formatDuration(num(stats.uptime))}` : ''}`],
    ['clients', `${formatCount(stats.connectedClients)} connected, ${formatCount(stats.totalConnections)} connections in total`],
    ['messages', `${formatCount(metrics.messagesSent)} sent, ${formatCount(metrics.messagesReceived)} received`],
    ['bytes', `${formatBytes(num(metrics.bytesSent))} sent, ${formatBytes(num(metrics.bytesReceived))} received`],
    ['requests', `${formatCount(metrics.requestsInFlight)} in flight`],
    ['errors', num(metrics.errors) > 0 ? painter.paint('yellow', formatCount(metrics.errors)) : formatCount(metrics.errors)],
  ];
  for (const [key, value] of Object.entries(metrics)) {
    if (!KNOWN_METRICS.has(key)) fields.push([key, typeof value === 'number' ? formatCount(value) : formatValue(value, painter, 0)]);
  }
  const pubsub = stats.pubsub;
  if (pubsub && typeof pubsub === 'object') {
    fields.push([
      'pubsub',
      `${formatCount(pubsub.subscriptions)} subscriptions, ${formatCount(pubsub.published)} published, ${formatCount(pubsub.delivered)} delivered, ${formatCount(pubsub.dropped)} dropped`,
    ]);
  }
  const lines = [formatFields(fields, painter), ''];
  const clients = answer.clients ?? [];
  if (clients.length === 0) lines.push(painter.paint('dim', 'no clients connected'));
  else {
    const rows = clients.map((c) => [
      c.clientId,
      formatTimeAgo(c.connectedAt, now),
      formatAgo(c.lastActivity, now),
      c.metadata && Object.keys(c.metadata).length > 0 ? formatValue(c.metadata, painter, 0) : painter.paint('dim', '-'),
    ]);
    lines.push(formatTable(['CLIENT', 'CONNECTED', 'LAST ACTIVITY', 'METADATA'], rows, painter));
  }
  return lines.join('\n');
}

export const stats: ICommand = {
  name: 'stats',
  summary: "show the server's counters and connected clients",
  arguments: [],
  description: [
    "Asks the server's introspection ($smartipc.stats, answered when its permissions allow) and",
    "prints its getStats() and clients. With --json: {id, stats, clients} on one line. The CLI's own",
    'connection is among the clients (metadata agent "smartipc-cli").',
  ].join('\n'),
  examples: ['smartipc stats --socket /tmp/demo.sock --id demo', 'smartipc stats --socket /tmp/demo.sock --id demo --json | jq .stats.metrics'],
  async run({ connect, settings, out, signal }) {
    const client = await connect();
    const answer = await introspect<IIntrospectedStats>(client, STATS_REQUEST, { timeout: settings.timeoutMs, signal });
    out.result(answer, renderStats(answer, out.out));
    return EXIT_OK;
  },
};

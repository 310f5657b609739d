// subscribe PATTERN [--count N]: one line per published message until N arrived or Ctrl-C.
import { describeInvalidPattern, type IPublishInfo } from '../../index.js';
import { integerFlag } from '../cli.args.js';
import type { ICommand } from '../cli.command.js';
import { describeCliEndpoint } from '../cli.endpoint.js';
import { EXIT_FAILURE, EXIT_OK, UsageError } from '../cli.errors.js';
import { formatClock, formatValue } from '../cli.format.js';

export const subscribe: ICommand = {
  name: 'subscribe',
  summary: 'print the messages published on matching topics',
  arguments: [{ name: 'PATTERN', description: 'topic pattern: * matches one segment (user.*), > as the last matches one or more (user.>)' }],
  options: {
    count: { type: 'string', short: 'c', value: 'N', description: 'exit after N messages (default: until Ctrl-C)' },
  },
  description: [
    'One line per message: time, topic, publisher and data; with --json',
    '{"topic","from","data","receivedAt"} per line. The subscription survives a server restart',
    '(the client reconnects and subscribes again). Ctrl-C ends it cleanly with exit 0.',
  ].join('\n'),
  examples: ["smartipc subscribe 'user.*' --socket /tmp/demo.sock --id demo", "smartipc subscribe 'jobs.>' --count 1 --json --socket /tmp/demo.sock --id demo | jq .data"],
  async run({ args, values, connect, out, signal, settings }) {
    const [pattern] = args;
    const count = integerFlag(values, 'count');
    const problem = describeInvalidPattern(pattern);
    if (problem !== undefined) throw new UsageError(`PATTERN: ${problem}`);
    const client = await connect({ reconnect: true });
    let received = 0;
    let failure: unknown;
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const onAbort = () => finish();
    signal.addEventListener('abort', onAbort, { once: true });
    const handler = (data: unknown, info: IPublishInfo) => {
      if (count !== undefined && received >= count) return;
      received++;
      const now = Date.now();
      out.result(
        { topic: info.topic, from: info.from, data: data ?? null, receivedAt: new Date(now).toISOString() },
        `${out.out.paint('dim', formatClock(now))}  ${out.out.paint('cyan', info.topic)}  ${out.out.paint('dim', `from ${info.from}`)}  ${formatValue(data, out.out, 0)}`,
      );
      if (count !== undefined && received >= count) finish();
    };
    // Drops and reconnects are told on stderr; an error while not connected is the reconnect giving up.
    const onDisconnect = (reason: { code: string; message: string }) => out.note(`connection lost (${reason.code}: ${reason.message}); reconnecting...`);
    const onReconnecting = (attempt: number) => {
      if (attempt % 10 === 0) out.note(`still reconnecting (attempt ${attempt})`);
    };
    const onConnect = () => out.note('reconnected; subscription restored');
    const onError = (error: Error) => {
      if (client.getIsConnected()) {
        out.error(error, 'smartipc subscribe (continuing)');
        return;
      }
      failure = error;
      finish();
    };
    client.on('disconnect', onDisconnect);
    client.on('reconnecting', onReconnecting);
    client.on('connect', onConnect);
    client.on('error', onError);
    try {
      await client.subscribe(pattern, handler);
      out.note(`subscribed to ${pattern} on ${describeCliEndpoint(settings.endpoint)}${count !== undefined ? `, until ${count} message${count === 1 ? '' : 's'}` : ''} (Ctrl-C to stop)`);
      if (!signal.aborted) await finished;
      if (failure) throw failure;
      await client.unsubscribe(pattern, handler).catch(() => undefined);
    } finally {
      signal.removeEventListener('abort', onAbort);
      client.off('disconnect', onDisconnect);
      client.off('reconnecting', onReconnecting);
      client.off('connect', onConnect);
      client.off('error', onError);
    }
    if (signal.aborted) out.note(`${received} message${received === 1 ? '' : 's'}`);
    return failure ? EXIT_FAILURE : EXIT_OK;
  },
};

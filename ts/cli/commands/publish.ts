// publish TOPIC [JSON]: one publish through the server's broker.
import { describeInvalidTopic } from '../../index.js';
import type { ICommand } from '../cli.command.js';
import { EXIT_OK, UsageError } from '../cli.errors.js';

export const publish: ICommand = {
  name: 'publish',
  summary: 'publish to a topic',
  arguments: [
    { name: 'TOPIC', description: 'dot-separated topic, e.g. user.login (no wildcards)' },
    { name: 'JSON', description: 'the data as JSON, or - to read it from stdin (default: no data)', optional: true },
  ],
  description: 'Every other client subscribed to a matching pattern receives it (the server too, with server.publish listeners).',
  examples: [`smartipc publish user.login '{"user":"ada"}' --socket /tmp/demo.sock --id demo`],
  async run({ args, json, connect, out }) {
    const [topic, rawData] = args;
    const problem = describeInvalidTopic(topic);
    if (problem !== undefined) throw new UsageError(`TOPIC: ${problem}`);
    const data = await json.parse('argument JSON (the published data)', rawData);
    const client = await connect();
    await client.publish(topic, data);
    out.result({ ok: true, topic }, `published to ${out.out.paint('cyan', topic)}`);
    return EXIT_OK;
  },
};

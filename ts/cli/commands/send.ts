// send TYPE [JSON]: one fire-and-forget message.
import type { ICommand } from '../cli.command.js';
import { EXIT_OK } from '../cli.errors.js';

export const send: ICommand = {
  name: 'send',
  summary: 'send a fire-and-forget message',
  arguments: [
    { name: 'TYPE', description: 'the message type (server.onMessage(TYPE, ...))' },
    { name: 'JSON', description: "the message's data as JSON, or - to read it from stdin (default: no data)", optional: true },
  ],
  description: [
    'Sends the message and disconnects once it is written. Nothing comes back: a server without a',
    'handler for TYPE drops it (the server reports a dead letter). Use request for an answer.',
  ].join('\n'),
  examples: [`smartipc send log.write '{"level":"info","text":"hello"}' --socket /tmp/demo.sock --id demo`],
  async run({ args, json, connect, out }) {
    const [type, rawData] = args;
    const data = await json.parse('argument JSON (the message data)', rawData);
    const client = await connect();
    await client.sendMessage(type, data);
    out.result({ ok: true, type }, `sent ${out.out.paint('cyan', JSON.stringify(type))}`);
    return EXIT_OK;
  },
};

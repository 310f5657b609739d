// request TYPE [JSON]: one request, its response printed.
import type { ICommand } from '../cli.command.js';
import { EXIT_OK } from '../cli.errors.js';

export const request: ICommand = {
  name: 'request',
  summary: 'send a request and print the response',
  arguments: [
    { name: 'TYPE', description: 'the message type a server handler answers (server.onMessage(TYPE, ...))' },
    { name: 'JSON', description: "the request's data as JSON, or - to read it from stdin (default: no data)", optional: true },
  ],
  description: [
    'Prints the response: readable JSON, or with --json the response itself on one line',
    '(no response data prints null). A handler that throws exits 1 with HANDLER_ERROR and its message.',
  ].join('\n'),
  examples: [
    `smartipc request add '{"a":20,"b":22}' --socket /tmp/demo.sock --id demo`,
    `echo '{"id":7}' | smartipc request getUser - --socket /tmp/demo.sock --id demo --json | jq .name`,
  ],
  async run({ args, json, connect, settings, out, signal }) {
    const [type, rawData] = args;
    const data = await json.parse('argument JSON (the request data)', rawData);
    const client = await connect();
    const response = await client.request(type, data, { timeout: settings.timeoutMs, signal });
    if (response === undefined) out.result(null, out.out.paint('dim', '(no data)'));
    else out.result(response);
    return EXIT_OK;
  },
};

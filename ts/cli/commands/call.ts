// call SERVICE METHOD [JSON]: one service call routed by the hub.
import type { IpcClient } from '../../index.js';
import type { ICommand } from '../cli.command.js';
import { CliFailure, EXIT_OK } from '../cli.errors.js';

type TCall = (service: string, method: string, params?: unknown, options?: { timeout?: number; signal?: AbortSignal }) => Promise<unknown>;

/** `client.call` where the library has services; a CliFailure where it does not yet. */
function callOf(client: IpcClient): TCall {
  const call = (client as unknown as { call?: TCall }).call;
  if (typeof call !== 'function') {
    throw new CliFailure('NOT_SUPPORTED', 'this @push.rocks/smartipc has no client.call (services): upgrade the package that provides the CLI');
  }
  return call.bind(client);
}

export const call: ICommand = {
  name: 'call',
  summary: 'call a service method through the hub and print the result',
  arguments: [
    { name: 'SERVICE', description: 'the service name (client.provide(SERVICE, ...))' },
    { name: 'METHOD', description: 'the method of the service' },
    { name: 'JSON', description: 'the params as JSON, or - to read them from stdin (default: none)', optional: true },
  ],
  description: [
    'The hub routes the call to one instance of the service. Prints the result like request does.',
    'No instance: SERVICE_NOT_FOUND; no such method: METHOD_NOT_FOUND; a throw: HANDLER_ERROR (exit 1).',
    "See 'smartipc services' for what the hub knows.",
  ].join('\n'),
  examples: [`smartipc call user get '{"id":7}' --socket /tmp/demo.sock --id demo`, `smartipc call math add '[1,2]' --host 10.0.0.5 --port 7000 --id hub --json`],
  async run({ args, json, connect, settings, out, signal }) {
    const [service, method, rawParams] = args;
    const params = await json.parse('argument JSON (the call params)', rawParams);
    const client = await connect();
    const result = await callOf(client)(service, method, params, { timeout: settings.timeoutMs, signal });
    if (result === undefined) out.result(null, out.out.paint('dim', '(no data)'));
    else out.result(result);
    return EXIT_OK;
  },
};

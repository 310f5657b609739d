// From the endpoint flags to a client: where (--socket or --host/--port, TLS), who (--id,
// --client-id, --token) and how long (--timeout). The CLI always connects clientOnly: it never
// hosts an endpoint and never creates a socket file.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { SmartIpc, type IIpcClientOptions, type IpcClient, type ITcpEndpoint } from '../index.js';
import { integerFlag, stringFlag, type TParsedValues } from './cli.args.js';
import { UsageError } from './cli.errors.js';

/** The CLI's default for connecting and for each request, in ms (the library's request default is 30 s). */
export const CLI_DEFAULT_TIMEOUT_MS = 10_000;

export type TCliEndpoint = { socketPath: string } | { host: string; port: number; tls?: ITcpEndpoint['tls'] };

export interface IEndpointSettings {
  endpoint: TCliEndpoint;
  /** undefined: not given (only ping works without it). */
  id?: string;
  token?: string;
  timeoutMs: number;
  serialization: 'json' | 'advanced';
  clientId?: string;
}

/** Reads and checks the endpoint flags (with SMARTIPC_SOCKET, SMARTIPC_ID, SMARTIPC_TOKEN as fallbacks). */
export function resolveEndpointFlags(values: TParsedValues, env: NodeJS.ProcessEnv): IEndpointSettings {
  const socket = stringFlag(values, 'socket');
  const host = stringFlag(values, 'host');
  const port = integerFlag(values, 'port', { min: 1, max: 65_535 });
  const tlsCa = stringFlag(values, 'tls-ca');
  const servername = stringFlag(values, 'tls-servername');
  const tlsWanted = values.tls === true || tlsCa !== undefined || servername !== undefined;
  let endpoint: TCliEndpoint;
  if (socket !== undefined && (host !== undefined || port !== undefined)) {
    throw new UsageError('give either --socket or --host/--port, not both');
  }
  if (socket !== undefined || (host === undefined && port === undefined && env.SMARTIPC_SOCKET)) {
    const socketPath = socket ?? (env.SMARTIPC_SOCKET as string);
    if (socketPath.trim() === '') throw new UsageError('--socket needs a path');
    if (tlsWanted) throw new UsageError('--tls, --tls-ca and --tls-servername need --host/--port (TLS runs over TCP)');
    endpoint = { socketPath };
  } else if (port !== undefined) {
    let tls: ITcpEndpoint['tls'] | undefined;
    if (tlsWanted) {
      tls = {};
      if (tlsCa !== undefined) {
        try {
          tls.ca = fs.readFileSync(tlsCa);
        } catch (err) {
          throw new UsageError(`--tls-ca: cannot read ${tlsCa} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
        }
      }
      if (servername !== undefined) tls.servername = servername;
    }
    endpoint = { host: host ?? '127.0.0.1', port, ...(tls ? { tls } : {}) };
  } else if (host !== undefined) {
    throw new UsageError('--host needs --port');
  } else {
    throw new UsageError('say where the server is: --socket PATH, or --host HOST --port PORT (or set SMARTIPC_SOCKET)');
  }
  const serialization = stringFlag(values, 'serialization') ?? 'json';
  if (serialization !== 'json' && serialization !== 'advanced') {
    throw new UsageError(`--serialization must be 'json' or 'advanced', got '${serialization}'`);
  }
  const id = stringFlag(values, 'id') ?? (env.SMARTIPC_ID || undefined);
  const token = stringFlag(values, 'token') ?? (env.SMARTIPC_TOKEN || undefined);
  const clientId = stringFlag(values, 'client-id');
  if (id !== undefined && id === '') throw new UsageError('--id needs a value');
  if (clientId !== undefined && clientId === '') throw new UsageError('--client-id needs a value');
  return {
    endpoint,
    id,
    token,
    timeoutMs: integerFlag(values, 'timeout', { min: 1, max: 2_147_483_647 }) ?? CLI_DEFAULT_TIMEOUT_MS,
    serialization,
    ...(clientId !== undefined ? { clientId } : {}),
  };
}

/** 'unix socket /tmp/x.sock', 'tcp 127.0.0.1:8080', 'tls example.org:443'. */
export function describeCliEndpoint(endpoint: TCliEndpoint): string {
  if ('socketPath' in endpoint) return endpoint.socketPath;
  return `${endpoint.tls ? 'tls' : 'tcp'} ${endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`;
}

export interface IConnectOptions {
  /** What the server sees in the client's metadata as `command`. */
  command: string;
  /** Keep the connection through drops (subscribe). @default false: one-shot commands fail instead. */
  reconnect?: boolean;
  version: string;
}

/** Builds the clientOnly client the CLI uses. `settings.id` must be set. */
export function createCliClient(settings: IEndpointSettings, options: IConnectOptions): IpcClient {
  if (settings.id === undefined) throw new UsageError("--id is needed: the server's id (or set SMARTIPC_ID)");
  const clientOptions: IIpcClientOptions = {
    ...settings.endpoint,
    id: settings.id,
    clientId: settings.clientId ?? `smartipc-cli-${crypto.randomBytes(4).toString('hex')}`,
    clientOnly: true,
    metadata: { agent: 'smartipc-cli', version: options.version, command: options.command },
    serialization: settings.serialization,
    connectRetry: { enabled: false },
    reconnect: { enabled: options.reconnect === true },
    registerTimeoutMs: settings.timeoutMs,
    requestTimeout: settings.timeoutMs,
    // `authToken` comes with the security work; spread so this compiles with and without it.
    ...(settings.token !== undefined ? { authToken: settings.token } : {}),
  };
  return SmartIpc.createClient(clientOptions);
}

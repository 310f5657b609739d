// Argument parsing on node:util parseArgs: the flags every command shares, per-command flags,
// number and JSON arguments (JSON also from stdin with `-`), turned into UsageErrors that name
// what was wrong.
import { parseArgs } from 'node:util';
import { UsageError } from './cli.errors.js';

/** One flag: parseArgs' config plus what --help says about it. */
export interface ICliOption {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder of the value in --help, e.g. 'MS'. */
  value?: string;
  description: string;
}

export type TCliOptions = Record<string, ICliOption>;

/** Where to connect and how: every command takes these. */
export const ENDPOINT_OPTIONS: TCliOptions = {
  socket: { type: 'string', value: 'PATH', description: 'Unix socket (or Windows named pipe) of the server [env SMARTIPC_SOCKET]' },
  host: { type: 'string', value: 'HOST', description: 'TCP host (default 127.0.0.1; needs --port)' },
  port: { type: 'string', value: 'PORT', description: 'TCP port of the server' },
  id: { type: 'string', value: 'ID', description: "the server's id (needed by every command but ping) [env SMARTIPC_ID]" },
  token: { type: 'string', value: 'TOKEN', description: 'auth token sent at the handshake [env SMARTIPC_TOKEN, kept out of ps]' },
  tls: { type: 'boolean', description: "TLS over TCP, trusting the system's CAs" },
  'tls-ca': { type: 'string', value: 'FILE', description: 'TLS over TCP, trusting the CA certificate(s) in FILE (PEM)' },
  'tls-servername': { type: 'string', value: 'NAME', description: 'TLS server name to verify when it differs from --host' },
  timeout: { type: 'string', value: 'MS', description: 'connect and request timeout in milliseconds (default 10000)' },
  serialization: { type: 'string', value: 'json|advanced', description: "the server's serialization (default json)" },
  'client-id': { type: 'string', value: 'ID', description: 'clientId to connect as (default smartipc-cli-<random>)' },
};

export const OUTPUT_OPTIONS: TCliOptions = {
  json: { type: 'boolean', description: 'machine output: one JSON document per line' },
  help: { type: 'boolean', short: 'h', description: 'show help' },
};

export type TParsedValues = Record<string, string | boolean | undefined>;

/** Parses a command's arguments (after the command name). Unknown flags and missing values are UsageErrors. */
export function parseCommandArgs(args: string[], options: TCliOptions): { values: TParsedValues; positionals: string[] } {
  const config: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const [name, option] of Object.entries(options)) config[name] = { type: option.type, ...(option.short ? { short: option.short } : {}) };
  try {
    const { values, positionals } = parseArgs({ args, options: config, allowPositionals: true, strict: true });
    return { values: { ...values } as TParsedValues, positionals };
  } catch (err) {
    // parseArgs' own messages are good ("Unknown option '--x'", "Option '--count <value>' argument missing").
    throw new UsageError((err as Error).message);
  }
}

/** A positive integer flag (or undefined when absent). */
export function integerFlag(values: TParsedValues, name: string, { min = 1, max = Number.MAX_SAFE_INTEGER } = {}): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const text = String(raw).trim();
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got '${raw}'`);
  }
  return value;
}

export function stringFlag(values: TParsedValues, name: string): string | undefined {
  const raw = values[name];
  return typeof raw === 'string' ? raw : undefined;
}

/** Reads what stdin holds until its end (for the `-` argument). */
export async function readStdin(stdin: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The JSON arguments of one command line. Each is given inline or as `-` (read from stdin, once:
 * stdin has one content); a malformed one is a UsageError naming the argument.
 */
export class JsonArguments {
  private stdinTaken?: string;

  constructor(private readonly stdin: NodeJS.ReadableStream = process.stdin) {}

  /** `raw` undefined: the argument was left out (resolves undefined). `name` is how --help calls it. */
  public async parse(name: string, raw: string | undefined): Promise<unknown> {
    if (raw === undefined) return undefined;
    let text = raw;
    let from = '';
    if (raw === '-') {
      if (this.stdinTaken) throw new UsageError(`${name} and ${this.stdinTaken} cannot both be read from stdin ('-')`);
      this.stdinTaken = name;
      text = await readStdin(this.stdin);
      from = ' (read from stdin)';
    }
    if (text.trim() === '') throw new UsageError(`${name}${from} is empty: give a JSON value, e.g. '{}' or 'null'`);
    try {
      return JSON.parse(text);
    } catch (err) {
      const trimmed = text.trim();
      const bareWord = /^[A-Za-z_]/.test(trimmed) && !/^(true|false|null)$/.test(trimmed);
      const hint = bareWord ? ` (a string is quoted in JSON: '"${trimmed.length > 20 ? `${trimmed.slice(0, 20)}...` : trimmed}"')` : '';
      throw new UsageError(`${name}${from} is not valid JSON: ${(err as Error).message}${hint}`);
    }
  }
}

#!/usr/bin/env node
// The `smartipc` command line: inspect and drive a live smartipc endpoint with the package's
// public API (a clientOnly client or a waitForServer probe; it never hosts anything).
import * as fs from 'node:fs';
import { IpcError, type IpcClient } from '../index.js';
import { ENDPOINT_OPTIONS, JsonArguments, OUTPUT_OPTIONS, parseCommandArgs } from './cli.args.js';
import type { ICommand } from './cli.command.js';
import { createCliClient, resolveEndpointFlags } from './cli.endpoint.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './cli.errors.js';
import { commandHelp, mainHelp } from './cli.help.js';
import { Output, type IOutputStreams } from './cli.output.js';
import { COMMANDS } from './commands/index.js';

/** How long the CLI waits for its connection to close before it exits anyway. */
const DISCONNECT_BOUND_MS = 2_000;
/** Exit code of a second Ctrl-C (the shell's convention for SIGINT). */
const EXIT_INTERRUPTED = 130;

function readVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export interface IMainIo extends IOutputStreams {
  stdin: NodeJS.ReadableStream;
}

function bounded<T>(promise: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(error()), ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

function findCommand(name: string): ICommand {
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    const near = COMMANDS.filter((c) => c.name.startsWith(name.slice(0, 3))).map((c) => c.name);
    throw new UsageError(`unknown command '${name}'${near.length ? ` (did you mean ${near.join(' or ')}?)` : ''}; commands: ${COMMANDS.map((c) => c.name).join(', ')}`);
  }
  return command;
}

async function runCommand(command: ICommand, argv: string[], out: Output, io: IMainIo, version: string): Promise<number> {
  const options = { ...ENDPOINT_OPTIONS, ...OUTPUT_OPTIONS, ...command.options };
  const { values, positionals } = parseCommandArgs(argv, options);
  if (values.help === true) {
    io.stdout.write(`${commandHelp(command)}\n`);
    return EXIT_OK;
  }
  const required = command.arguments.filter((a) => !a.optional);
  if (positionals.length < required.length) throw new UsageError(`missing ${required.slice(positionals.length).map((a) => a.name).join(' and ')}`);
  if (positionals.length > command.arguments.length) {
    const extra = positionals[command.arguments.length];
    throw new UsageError(`unexpected argument '${extra}'${command.arguments.length ? ` (after ${command.arguments.map((a) => a.name).join(' ')}; JSON with spaces needs quotes)` : ''}`);
  }
  for (const [i, value] of positionals.entries()) {
    if (value === '' && !command.arguments[i].optional) throw new UsageError(`${command.arguments[i].name} must not be empty`);
  }
  const settings = resolveEndpointFlags(values, io.env);
  if (settings.id === undefined && !command.idOptional) throw new UsageError("--id is needed: the server's id (or set SMARTIPC_ID)");

  const aborter = new AbortController();
  const onSignal = () => {
    if (aborter.signal.aborted) process.exit(EXIT_INTERRUPTED);
    aborter.abort(new IpcError('ABORTED', 'interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const clients: IpcClient[] = [];
  try {
    return await command.run({
      args: positionals,
      values,
      out,
      settings,
      json: new JsonArguments(io.stdin),
      signal: aborter.signal,
      version,
      async connect({ reconnect = false } = {}) {
        const client = createCliClient(settings, { command: command.name, reconnect, version });
        clients.push(client);
        // Never let an 'error' event throw; a command that cares listens itself.
        client.on('error', () => undefined);
        const interrupted = new Promise<never>((_, reject) => {
          const fail = () => reject(aborter.signal.reason);
          if (aborter.signal.aborted) fail();
          else aborter.signal.addEventListener('abort', fail, { once: true });
        });
        interrupted.catch(() => undefined);
        // A dial into a silent network is bounded by --timeout too, not only the handshake.
        await Promise.race([
          bounded(client.connect(), settings.timeoutMs, () => new IpcError('TIMEOUT', `no connection within ${settings.timeoutMs} ms`)),
          interrupted,
        ]);
        return client;
      },
    });
  } finally {
    await Promise.all(clients.map((c) => bounded(c.disconnect(), DISCONNECT_BOUND_MS, () => new Error('disconnect timed out')).catch(() => undefined)));
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Runs one command line; resolves to the exit code. */
export async function main(argv: string[], io: IMainIo): Promise<number> {
  const version = readVersion();
  const out = new Output(argv.includes('--json'), io);
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(`${mainHelp(COMMANDS, version)}\n`);
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || (name === 'help' && rest.length === 0)) {
    io.stdout.write(`${mainHelp(COMMANDS, version)}\n`);
    return EXIT_OK;
  }
  if (name === '--version') {
    io.stdout.write(`${version}\n`);
    return EXIT_OK;
  }
  let command: ICommand | undefined;
  try {
    if (name === 'help') {
      io.stdout.write(`${commandHelp(findCommand(rest[0]))}\n`);
      return EXIT_OK;
    }
    if (name.startsWith('-')) throw new UsageError(`a command comes first, got '${name}'`);
    command = findCommand(name);
    return await runCommand(command, rest, out, io, version);
  } catch (err) {
    const prefix = command ? `smartipc ${command.name}` : 'smartipc';
    if (err instanceof UsageError) {
      if (out.json) out.error(err, prefix);
      else io.stderr.write(`${prefix}: ${err.message}\nRun '${command ? `smartipc ${command.name} --help` : 'smartipc --help'}' for usage.\n`);
      return EXIT_USAGE;
    }
    out.error(err, prefix);
    return EXIT_FAILURE;
  } finally {
    await out.flush();
  }
}

const exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env });
process.exitCode = exitCode;
// Everything is closed by now and the process ends by itself; this only bounds a straggler.
setTimeout(() => process.exit(exitCode), DISCONNECT_BOUND_MS).unref();

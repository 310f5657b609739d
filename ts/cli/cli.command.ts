// What a command is (its help and its run function) and what it gets to run with.
import type { IpcClient } from '../index.js';
import type { JsonArguments, TCliOptions, TParsedValues } from './cli.args.js';
import type { IEndpointSettings } from './cli.endpoint.js';
import type { Output } from './cli.output.js';

export interface ICommandArgument {
  /** As shown in usage and named in errors: 'TYPE', 'JSON'. */
  name: string;
  description: string;
  optional?: boolean;
}

export interface ICommandContext {
  /** The positional arguments after the command name, checked against `arguments`. */
  args: string[];
  values: TParsedValues;
  out: Output;
  settings: IEndpointSettings;
  json: JsonArguments;
  /** A clientOnly client, connected; disconnected by the runner when the command ends. */
  connect(options?: { reconnect?: boolean }): Promise<IpcClient>;
  /** Aborts on Ctrl-C (SIGINT) or SIGTERM. */
  signal: AbortSignal;
  version: string;
}

export interface ICommand {
  name: string;
  /** One line for the command list. */
  summary: string;
  arguments: ICommandArgument[];
  /** Flags of this command only (the endpoint and output flags are everyone's). */
  options?: TCliOptions;
  /** What the command does and prints, a few lines. */
  description: string;
  examples: string[];
  /** true: works without --id (ping: any server answers a probe). */
  idOptional?: boolean;
  /** Resolves to the exit code. Throw an IpcError or CliFailure for 1, a UsageError for 2. */
  run(context: ICommandContext): Promise<number>;
}

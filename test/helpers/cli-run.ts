// Running the installed CLI: to completion (exit code, stdout, stderr), as a long-running child
// (subscribe), or on a pseudo-terminal through script(1) to see what a terminal user sees.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

export interface ICliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface IRunOptions {
  /** Written to stdin, which is then closed (closed at once without it). */
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** A run that takes longer is killed and fails the test. @default 20000 */
  timeoutMs?: number;
}

/**
 * The environment a run starts from: the test's, minus anything that would change the CLI's
 * behaviour. `CI` and `NODE_DISABLE_COLORS` go too: under them Node's `hasColors()` says a
 * terminal has no colours.
 */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key.startsWith('SMARTIPC_') || key === 'NO_COLOR' || key === 'FORCE_COLOR' || key === 'NODE_DISABLE_COLORS' || key === 'CI' || key === 'NODE_OPTIONS' || key === 'DEBUG') delete env[key];
  }
  return { ...env, ...extra };
}

export interface ICliChild {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when the child has exited; one that has not after `timeoutMs` is killed and rejects. */
  exited(): Promise<ICliResult>;
}

function spawnCollecting(file: string, args: string[], options: IRunOptions, extraEnv: NodeJS.ProcessEnv = {}): ICliChild {
  const child = spawn(file, args, { env: cleanEnv({ ...extraEnv, ...options.env }), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(options.input);
  const done = new Promise<ICliResult>((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  const timeoutMs = options.timeoutMs ?? 20_000;
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited: () => {
      let timer: NodeJS.Timeout | undefined;
      return Promise.race([
        done,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`${[file, ...args].join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
          }, timeoutMs);
        }),
      ]).finally(() => clearTimeout(timer));
    },
  };
}

/** Starts the CLI and returns at once (for commands that run until told otherwise). */
export function startCli(bin: string, args: string[], options: IRunOptions = {}): ICliChild {
  return spawnCollecting(bin, args, options);
}

export function runCli(bin: string, args: string[], options: IRunOptions = {}): Promise<ICliResult> {
  return startCli(bin, args, options).exited();
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** True where script(1) (util-linux) can give a child a pseudo-terminal. */
export function hasScript(): boolean {
  if (process.platform !== 'linux') return false;
  const probe = spawnSync('script', ['-qec', 'true', '/dev/null'], { stdio: 'ignore', timeout: 5_000 });
  return probe.status === 0;
}

/** Runs the CLI on a pseudo-terminal (its stdout and stderr both the terminal, merged into `stdout`). */
export function runCliOnTty(bin: string, args: string[], options: IRunOptions = {}): Promise<ICliResult> {
  const command = [bin, ...args].map(shellQuote).join(' ');
  return spawnCollecting('script', ['-qec', command, '/dev/null'], options, { TERM: 'xterm-256color', COLUMNS: '100' }).exited();
}

/** An escape sequence that sets a colour or style (ESC [ ... m). */
export const ANSI_COLOUR = /\u001b\[[0-9;]*m/;

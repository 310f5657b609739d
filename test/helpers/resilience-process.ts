// Child processes for the resilience tests: fork a helper script under tsx, wait for it to say
// ready, kill it with any signal. Every child is also killed when the test process exits, so an
// assertion that fails half-way never leaves a process behind.
import * as childProcess from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTimeout } from './fixtures.js';

const helpersDir = path.dirname(fileURLToPath(import.meta.url));
export const RESILIENCE_SERVER_SCRIPT = path.join(helpersDir, 'resilience-server.ts');
export const RESILIENCE_CLIENT_SCRIPT = path.join(helpersDir, 'resilience-client.ts');
export const RESILIENCE_FAULTY_SCRIPT = path.join(helpersDir, 'resilience-faulty.ts');

const live = new Set<childProcess.ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface IChild {
  child: childProcess.ChildProcess;
  pid: number;
  /** The last few KiB of the child's stderr, for assertion messages. */
  stderrTail(): string;
  /** Waits for the next { event } message from the child, failing after ms or when it exits first. */
  next(event: string, ms?: number): Promise<Record<string, unknown>>;
  send(message: Record<string, unknown>): void;
  /** Sends a signal; SIGKILL and SIGTERM then wait for the exit. A stopped child is woken to die. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  exited: Promise<void>;
}

export function forkScript(script: string, args: string[], env: Record<string, string> = {}): IChild {
  const child = childProcess.fork(script, args, {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  live.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => {
    stderr = (stderr + text).slice(-4_000);
  });
  const inbox: Array<Record<string, unknown>> = [];
  const waiters: Array<{ event: string; resolve: (m: Record<string, unknown>) => void }> = [];
  child.on('message', (message: Record<string, unknown>) => {
    const i = waiters.findIndex((w) => w.event === message.event);
    if (i >= 0) waiters.splice(i, 1)[0].resolve(message);
    else inbox.push(message);
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
  });
  exited.then(() => live.delete(child));
  const handle: IChild = {
    child,
    pid: child.pid!,
    stderrTail: () => stderr,
    next: (event, ms = 15_000) => {
      const i = inbox.findIndex((m) => m.event === event);
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
      const arrived = new Promise<Record<string, unknown>>((resolve) => waiters.push({ event, resolve }));
      const died = exited.then(() => {
        throw new Error(`child ${path.basename(script)} exited (${child.signalCode ?? child.exitCode}) before "${event}"; stderr:\n${stderr}`);
      });
      return withTimeout(Promise.race([arrived, died]), ms, `"${event}" from ${path.basename(script)} (stderr: ${stderr.trim().slice(-500)})`);
    },
    send: (message) => {
      child.send(message);
    },
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      if (signal === 'SIGKILL' || signal === 'SIGTERM') {
        if (signal === 'SIGTERM') child.kill('SIGCONT');
        await withTimeout(exited, 10_000, `exit of ${path.basename(script)}`);
      }
    },
    exited,
  };
  return handle;
}

/** Forks a script and waits for its 'ready' event; kills it if it never comes. */
async function forkReady(script: string, args: string[], env: Record<string, string>): Promise<IChild> {
  const handle = forkScript(script, args, env);
  try {
    await handle.next('ready', 20_000);
  } catch (err) {
    await handle.kill();
    throw err;
  }
  return handle;
}

/** A resilience-server child on socketPath; resolves once it accepts connections. */
export function spawnServer(socketPath: string, id: string, options: Record<string, unknown> = {}): Promise<IChild> {
  return forkReady(RESILIENCE_SERVER_SCRIPT, [socketPath, id], { RESILIENCE_SERVER_OPTIONS: JSON.stringify(options) });
}

/** A resilience-client child connected to socketPath as clientId. */
export function spawnClient(socketPath: string, id: string, clientId: string, options: Record<string, unknown> = {}): Promise<IChild> {
  return forkReady(RESILIENCE_CLIENT_SCRIPT, [socketPath, id, clientId], { RESILIENCE_CLIENT_OPTIONS: JSON.stringify(options) });
}

/** Whether a process with this pid still exists (a zombie counts as gone once reaped). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

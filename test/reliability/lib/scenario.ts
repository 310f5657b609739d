// The scenario side: its configuration, the child processes (roles) it starts and talks to, the
// bounds it checks, and the one row it reports. Every wait is bounded; every child is killed on
// the way out, whatever happened.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IRoleCall, IRow, IScenarioConfig, TRoleMessage, TScenarioMessage } from './protocol.js';
import { now, sleep } from './measure.js';

export const LIB_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROLES_DIR = path.join(LIB_DIR, 'roles');

export const config: IScenarioConfig = JSON.parse(process.argv[2] ?? '{"id":"?","profile":"quick","hardTimeoutMs":120000}') as IScenarioConfig;
export const quick = config.profile === 'quick';

/** One value per profile. */
export function pick<T>(quickValue: T, fullValue: T): T {
  return quick ? quickValue : fullValue;
}

function send(message: TScenarioMessage): void {
  if (process.send && process.connected) process.send(message);
  else if (message.t === 'row') process.stdout.write(`${JSON.stringify(message.row, null, 2)}\n`);
}

/** A progress line (the runner shows it on stderr). */
export function progress(text: string): void {
  if (process.send && process.connected) send({ t: 'progress', text });
  else process.stderr.write(`  ${text}\n`);
}

let socketCounter = 0;
const socketPaths: string[] = [];

/** A socket path nobody else uses (short: Unix socket paths are limited to ~107 bytes); removed when the scenario ends. */
export function socketPath(name: string): string {
  const socket = path.join(os.tmpdir(), `sipc-rel-${config.id}-${name}-${process.pid}-${++socketCounter}.sock`);
  socketPaths.push(socket);
  return socket;
}

/** What a SIGKILLed server (or a raw peer) leaves behind. */
function removeSocketFiles(): void {
  for (const socket of socketPaths) {
    for (const file of [socket, `${socket}.tmp`]) fs.rmSync(file, { force: true });
  }
}

// ---- roles -----------------------------------------------------------------------------------

export interface IRoleSpawnOptions {
  /** A file in lib/roles (without directory) or an absolute path. */
  script: string;
  config: Record<string, unknown>;
  /** Shown in messages. */
  name: string;
  /** Run under `sh -c 'ulimit -n N; exec node ...'`. */
  ulimitFiles?: number;
  /** Extra node flags. */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
}

const roles = new Set<Role>();

/** A child process running a role: its commands, its events, its exit. */
export class Role {
  public readonly pid: number;
  public readyData: unknown;
  public exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  public readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private tailText = '';
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; cmd: string }>();
  private readonly listeners = new Map<string, Array<(data: any) => void>>();
  private fatalMessage?: string;

  constructor(public readonly name: string, private readonly proc: ChildProcess) {
    this.pid = proc.pid ?? -1;
    roles.add(this);
    const keep = (chunk: Buffer) => {
      this.tailText = (this.tailText + chunk.toString()).slice(-3000);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    proc.on('message', (message: TRoleMessage) => this.onMessage(message));
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        roles.delete(this);
        for (const [, call] of this.calls) call.reject(new Error(`${this.name} exited (${signal ?? code}) during ${call.cmd}${this.describeTail()}`));
        this.calls.clear();
        resolve({ code, signal });
      });
    });
  }

  private onMessage(message: TRoleMessage): void {
    if (!message || typeof message !== 'object') return;
    if (message.t === 'reply') {
      const call = this.calls.get(message.id);
      if (!call) return;
      this.calls.delete(message.id);
      if (message.ok) call.resolve(message.result);
      else call.reject(Object.assign(new Error(`${this.name} ${call.cmd}: ${message.error.message}`), { code: message.error.code }));
      return;
    }
    if (message.t === 'fatal') this.fatalMessage = message.message;
    const name = message.t === 'event' ? message.name : message.t;
    const data = message.t === 'event' ? message.data : message.t === 'ready' ? message.data : message.message;
    for (const listener of [...(this.listeners.get(name) ?? [])]) listener(data);
  }

  public get alive(): boolean {
    return this.exitInfo === undefined;
  }

  public get fatal(): string | undefined {
    return this.fatalMessage;
  }

  public get tail(): string {
    return this.tailText;
  }

  private describeTail(): string {
    const text = this.tailText.trim();
    return text ? `\n--- ${this.name} output ---\n${text.split('\n').slice(-15).join('\n')}` : '';
  }

  /** Sends a command and waits (bounded) for its answer. */
  public call<T = unknown>(cmd: string, args?: unknown, timeoutMs = 15_000): Promise<T> {
    if (!this.alive || !this.proc.connected) return Promise.reject(new Error(`${this.name} is not running (${cmd})${this.describeTail()}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(id);
        reject(new Error(`${this.name} did not answer ${cmd} within ${timeoutMs} ms${this.describeTail()}`));
      }, timeoutMs);
      this.calls.set(id, {
        cmd,
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.proc.send({ t: 'call', id, cmd, args } satisfies IRoleCall);
    });
  }

  public on(event: string, listener: (data: any) => void): () => void {
    const list = this.listeners.get(event) ?? [];
    list.push(listener);
    this.listeners.set(event, list);
    return () => {
      const at = list.indexOf(listener);
      if (at >= 0) list.splice(at, 1);
    };
  }

  /** The next `event` (bounded). */
  public waitEvent<T = unknown>(event: string, timeoutMs = 10_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const off = this.on(event, (data) => {
        clearTimeout(timer);
        off();
        resolve(data as T);
      });
      const timer = setTimeout(() => {
        off();
        reject(new Error(`${this.name}: no "${event}" within ${timeoutMs} ms${this.describeTail()}`));
      }, timeoutMs);
    });
  }

  public signal(signal: NodeJS.Signals): void {
    if (this.alive) this.proc.kill(signal);
  }

  /** SIGKILL and wait for the exit. */
  public async kill(): Promise<void> {
    if (this.alive) {
      this.proc.kill('SIGCONT');
      this.proc.kill('SIGKILL');
    }
    await this.exited;
  }

  /** Waits (bounded) for the process to exit by itself; SIGKILLs it after `timeoutMs`. */
  public async waitExit(timeoutMs = 5_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([this.exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)))]);
    clearTimeout(timer);
    if (exited) return { ...exited, killed: false };
    await this.kill();
    return { ...this.exitInfo!, killed: true };
  }
}

/** Starts a role and waits (bounded) for it to report ready. The caller owns it (killed at the end anyway). */
export async function startRole(options: IRoleSpawnOptions): Promise<Role> {
  const script = path.isAbsolute(options.script) ? options.script : path.join(ROLES_DIR, options.script);
  const nodeArgs = ['--import', 'tsx', '--expose-gc', ...(options.nodeArgs ?? [])];
  if (config.cpuProfDir) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${path.join(config.cpuProfDir, options.name)}`);
  const roleConfig = JSON.stringify({ hardTimeoutMs: config.hardTimeoutMs, ...options.config });
  const stdio: Array<'ignore' | 'pipe' | 'ipc'> = ['ignore', 'pipe', 'pipe', 'ipc'];
  const proc = options.ulimitFiles === undefined
    ? spawn(process.execPath, [...nodeArgs, script, roleConfig], { stdio })
    : spawn('sh', ['-c', `ulimit -n ${options.ulimitFiles} && exec "$0" "$@"`, process.execPath, ...nodeArgs, script, roleConfig], { stdio });
  const role = new Role(options.name, proc);
  const timeoutMs = options.readyTimeoutMs ?? 20_000;
  try {
    role.readyData = await Promise.race([
      role.waitEvent('ready', timeoutMs),
      role.exited.then((info) => {
        throw new Error(`${options.name} exited (${info.signal ?? info.code}) before it was ready\n${role.tail.trim().split('\n').slice(-15).join('\n')}`);
      }),
      new Promise<never>((_, reject) => role.on('fatal', (message: string) => reject(new Error(message)))),
    ]);
  } catch (err) {
    await role.kill();
    throw err;
  }
  return role;
}

// ---- bounded waits ---------------------------------------------------------------------------

/** Rejects when `promise` has not settled within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `predicate` every `everyMs` until true; false when `ms` ran out. */
export async function until(predicate: () => boolean | Promise<boolean>, ms: number, everyMs = 10): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (await predicate()) return true;
    if (performance.now() > deadline) return false;
    await sleep(everyMs);
  }
}

// ---- the row ---------------------------------------------------------------------------------

/** Collects the bounds a scenario checks and the figures it measured. */
export class Verdict {
  public readonly failures: string[] = [];
  public readonly figures: Record<string, number | string | boolean | null> = {};

  /** Records a bound: `ok` false adds `what` (with its figure) to the failures. */
  public check(ok: boolean, what: string): boolean {
    if (!ok) this.failures.push(what);
    return ok;
  }

  public figure(name: string, value: number | string | boolean | null | undefined): void {
    this.figures[name] = value === undefined || (typeof value === 'number' && !Number.isFinite(value)) ? (value === undefined ? null : String(value)) : value;
  }
}

export interface IRowText {
  scenario: string;
  load: string;
  faults: string;
  badInputs: string;
  lost: string;
  figure: string;
}

/**
 * Runs a scenario: `body` measures and fills the verdict, then returns the row's text. A throw
 * (a hang caught by a bound, a child that died) fails the row with the error. Every child
 * process still running is killed before the row is sent.
 */
export function runScenario(title: string, body: (verdict: Verdict) => Promise<IRowText>): void {
  const t0 = performance.now();
  const verdict = new Verdict();
  let sent = false;
  const finish = async (text: IRowText) => {
    if (sent) return;
    sent = true;
    await Promise.all([...roles].map((role) => role.kill()));
    removeSocketFiles();
    const row: IRow = {
      id: config.id,
      ...text,
      pass: verdict.failures.length === 0,
      failures: verdict.failures,
      figures: verdict.figures,
      durationMs: Math.round(performance.now() - t0),
    };
    send({ t: 'row', row });
    // Let the IPC message leave, then go: open handles of a failed run must not keep us here.
    setTimeout(() => process.exit(0), 100);
  };
  const failWith = (err: unknown) => {
    verdict.failures.push(`error: ${(err as Error)?.stack ?? String(err)}`);
    void finish({ scenario: title, load: '-', faults: '-', badInputs: '-', lost: '?', figure: `error: ${String((err as Error)?.message ?? err).split('\n')[0]}` });
  };
  process.on('uncaughtException', failWith);
  process.on('unhandledRejection', failWith);
  process.on('disconnect', () => {
    for (const role of roles) role.signal('SIGKILL');
    removeSocketFiles();
    process.exit(2);
  });
  // Our own bound, a little inside the runner's: report what happened instead of being killed.
  const hard = setTimeout(() => failWith(new Error(`scenario ${config.id} did not finish within its bound of ${config.hardTimeoutMs - 3_000} ms`)), Math.max(1_000, config.hardTimeoutMs - 3_000));
  hard.unref();
  body(verdict).then(finish, failWith);
}

/** Writes a JSON file next to the results (debug output a scenario wants to keep). */
export function writeDebugFile(name: string, data: unknown): string {
  const dir = path.join(LIB_DIR, '..', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  fs.writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

export { now, sleep };

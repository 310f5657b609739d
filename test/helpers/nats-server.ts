// A real nats-server for the NATS tests: started on 127.0.0.1 with a port it picks itself
// (`-p -1 --ports_file_dir DIR`: the chosen port is written to a file, so there is no free-port
// race), stopped by its pid, restartable on the same port for outage tests. Without a nats-server
// binary the tests that need one FAIL with that reason; they are never skipped.
import * as childProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface INatsServerOptions {
  /** Lines of nats-server configuration (e.g. `max_payload: 65536`), written to a config file. */
  config?: string[];
  /** How long start() may take before it fails. @default 10000 */
  startTimeoutMs?: number;
}

const INSTALL_HINT = 'install it with `apt-get install -y nats-server` (Debian) or put a nats-server binary on PATH; .ci/run installs it when missing';

/** The nats-server binary: $NATS_SERVER_BIN, or nats-server on PATH (and /usr/sbin, where Debian puts it). Throws naming how to install it. */
export function findNatsServer(): string {
  const explicit = process.env.NATS_SERVER_BIN;
  if (explicit) {
    if (fs.existsSync(explicit)) return explicit;
    throw new Error(`NATS_SERVER_BIN=${explicit} does not exist; ${INSTALL_HINT}`);
  }
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, 'nats-server');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error(`the NATS tests need a real nats-server and none was found on PATH; ${INSTALL_HINT}`);
}

/** One nats-server process (and the ones that replace it on restart), always on the same port once chosen. */
export class NatsServerProcess {
  public port = 0;
  private child?: childProcess.ChildProcess;
  private exited?: Promise<void>;
  private readonly dir: string;
  private stderrTail = '';

  private constructor(private readonly binary: string, private readonly options: INatsServerOptions) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartipc-nats-'));
  }

  /** Starts a nats-server on 127.0.0.1 with a port of its choosing and waits until it listens. */
  public static async start(options: INatsServerOptions = {}): Promise<NatsServerProcess> {
    const server = new NatsServerProcess(findNatsServer(), options);
    await server.spawn(-1);
    return server;
  }

  /** `nats://127.0.0.1:PORT` */
  public get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  public get pid(): number | undefined {
    return this.child?.pid;
  }

  public get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Kills the server by its pid (SIGKILL by default: an outage, not a goodbye) and waits for it to exit. */
  public async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    // Referenced while we wait: an unref'd child's exit alone would not keep the process alive.
    child.ref();
    child.kill(signal);
    await this.exited;
  }

  /** Starts a new nats-server on the same port (after stop()). */
  public async restart(): Promise<void> {
    await this.stop();
    await this.spawn(this.port);
  }

  /** Stops the server and removes its temp directory. Safe to call twice. */
  public async dispose(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private async spawn(port: number): Promise<void> {
    for (const file of fs.readdirSync(this.dir)) if (file.endsWith('.ports')) fs.rmSync(path.join(this.dir, file), { force: true });
    const args = ['-a', '127.0.0.1', '-p', String(port), '--ports_file_dir', this.dir];
    if (this.options.config && this.options.config.length > 0) {
      const configFile = path.join(this.dir, 'nats.conf');
      fs.writeFileSync(configFile, this.options.config.join('\n') + '\n');
      args.push('-c', configFile);
    }
    this.stderrTail = '';
    const child = childProcess.spawn(this.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-4000);
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    // A test process that dies without its after() hook must not leave a nats-server behind: on
    // exit, and on SIGTERM / SIGINT (the test runner ending a file that timed out), which end the
    // process without an 'exit' event. The signal is raised again once the child is killed.
    const killOnExit = () => child.kill('SIGKILL');
    const killOnSignal = (signal: NodeJS.Signals) => {
      child.kill('SIGKILL');
      process.removeListener('SIGTERM', killOnSignal);
      process.removeListener('SIGINT', killOnSignal);
      process.kill(process.pid, signal);
    };
    process.once('exit', killOnExit);
    process.on('SIGTERM', killOnSignal);
    process.on('SIGINT', killOnSignal);
    child.once('exit', () => {
      process.removeListener('exit', killOnExit);
      process.removeListener('SIGTERM', killOnSignal);
      process.removeListener('SIGINT', killOnSignal);
    });
    child.unref();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    const deadline = performance.now() + (this.options.startTimeoutMs ?? 10_000);
    // The polling below uses timers, which keep the process alive while it starts.
    const portsFile = path.join(this.dir, `${path.basename(this.binary)}_${child.pid}.ports`);
    while (performance.now() < deadline) {
      if (!this.running) throw new Error(`nats-server exited during start (code ${child.exitCode}, signal ${child.signalCode}): ${this.stderrTail.trim()}`);
      // The ports file appears once the listener is bound.
      if (fs.existsSync(portsFile)) {
        try {
          const ports = JSON.parse(fs.readFileSync(portsFile, 'utf8')) as { nats?: string[] };
          const url = ports.nats?.[0];
          if (url) {
            this.port = Number(new URL(url).port);
            return;
          }
        } catch {
          // written but not complete yet
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    child.kill('SIGKILL');
    throw new Error(`nats-server did not write its ports file within ${this.options.startTimeoutMs ?? 10_000} ms: ${this.stderrTail.trim()}`);
  }
}

import * as plugins from '../plugins.js';
import { IpcError } from '../smartipc.errors.js';
import { DEFAULT_REGISTER_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, PROTOCOL_VERSION } from '../smartipc.defaults.js';
import type { IHelloPayload } from '../interfaces/wire.js';
import type { IIpcChannelOptions } from '../interfaces/options.js';
import type { IMessageContext, TMessageHandler } from '../interfaces/events.js';
import { createTransport } from '../framing/transport.factory.js';
import type { IIpcListener, IpcTransport } from '../framing/classes.transport.js';
import { IpcChannel } from './classes.ipcchannel.js';
import { awaitHello, checkHello, registerWithServer, rejectHello, sendWelcome } from './handshake.js';
import { emptyMetrics, resolveCommon, type IResolvedCommon } from '../smartipc.options.js';

/**
 * An IpcChannel that opens its own endpoint: one symmetric link between exactly two processes.
 * role 'server' listens and takes one peer at a time (a second is refused with TOO_MANY_CLIENTS);
 * role 'client' connects; role 'auto' connects if someone listens and listens otherwise.
 * A dropped link emits `disconnect`; the listening side then waits for the next peer, the
 * connecting side calls `start()` again (use IpcClient for automatic reconnects).
 */
export class IpcStandaloneChannel extends IpcChannel {
  public readonly options: IResolvedCommon & { role: 'auto' | 'server' | 'client'; registerTimeoutMs: number };
  private readonly handlerMap: Map<string, TMessageHandler>;
  private listener?: IIpcListener;
  private activeRole?: 'server' | 'client';

  constructor(options: IIpcChannelOptions) {
    const common = resolveCommon(options);
    const handlers = new Map<string, TMessageHandler>();
    super({
      serialization: common.serialization,
      requestTimeoutMs: options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS,
      heartbeat: common.heartbeat,
      handlers,
      metrics: emptyMetrics(),
      outbox: { maxMessages: 0, maxBytes: 0 },
    });
    this.handlerMap = handlers;
    this.options = { ...common, role: options.role ?? 'auto', registerTimeoutMs: options.registerTimeoutMs ?? DEFAULT_REGISTER_TIMEOUT_MS };
    this.autoCleanup = options.autoCleanupSocketFile ?? false;
    this.socketMode = options.socketMode;
  }

  private readonly autoCleanup: boolean;
  private readonly socketMode?: number;

  /** The role this process took, once started. */
  public getRole(): 'server' | 'client' | undefined {
    return this.activeRole;
  }

  public onMessage<TReq = unknown, TRes = unknown>(type: string, handler: (data: TReq, peerId: string, context: IMessageContext) => TRes | Promise<TRes> | void): this {
    this.handlerMap.set(type, handler as TMessageHandler);
    return this;
  }

  /** Connects or listens (per role). As a listener it resolves once bound; `connect` fires when the peer arrives. */
  public async start(): Promise<void> {
    const role = this.options.role;
    if (role === 'client') return this.startAsClient();
    if (role === 'server') return this.startAsServer();
    try {
      await this.startAsClient();
    } catch (err) {
      if ((err as IpcError).code !== 'SERVER_UNAVAILABLE') throw err;
      try {
        await this.startAsServer();
      } catch (listenErr) {
        // Both sides started at once and the other one bound first: connect to it.
        if ((listenErr as IpcError).code === 'ADDRESS_IN_USE') return this.startAsClient();
        throw listenErr;
      }
    }
  }

  public async stop(): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    if (this.isConnected) {
      await new Promise<void>((resolve) => {
        this.once('disconnect', () => resolve());
        this.close('channel stopped');
      });
    }
    await listener?.close();
  }

  private transportFor(): IpcTransport {
    return createTransport(this.options.endpoint, { maxMessageSize: this.options.maxMessageSize }, { autoCleanupSocketFile: this.autoCleanup, socketMode: this.socketMode });
  }

  private hello(): IHelloPayload {
    return {
      serverId: this.options.id,
      clientId: `peer-${process.pid}-${plugins.crypto.randomBytes(3).toString('hex')}`,
      metadata: {},
      protocolVersion: PROTOCOL_VERSION,
      serialization: this.options.serialization,
      maxMessageSize: this.options.maxMessageSize,
    };
  }

  private async startAsClient(): Promise<void> {
    const transport = this.transportFor();
    try {
      await transport.connect();
    } catch (err) {
      throw new IpcError('SERVER_UNAVAILABLE', `no peer listens on ${transport.describe()} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
    }
    const { welcome, gate } = await registerWithServer(transport, this.hello(), this.options.registerTimeoutMs);
    this.activeRole = 'client';
    this.attach(transport, welcome.serverId, (handler) => gate.handOver(handler));
    this.emit('connect');
  }

  private async startAsServer(): Promise<void> {
    const medium = this.transportFor();
    this.listener = await medium.listen((socket) => {
      const transport = medium.forAccepted(socket);
      awaitHello(transport, this.options.registerTimeoutMs).then(
        ({ hello, gate }) => {
          const refusal = checkHello(hello, this.options) ?? (this.isConnected && !hello.probe
            ? new IpcError('TOO_MANY_CLIENTS', `channel "${this.options.id}" already has its peer`)
            : undefined);
          if (refusal) return rejectHello(transport, refusal);
          sendWelcome(transport, hello, this.options);
          if (hello.probe) return transport.end();
          this.attach(transport, hello.clientId, (handler) => gate.handOver(handler));
          this.emit('connect');
        },
        (err: IpcError) => {
          transport.destroy(err);
          if (err.code === 'PROTOCOL_ERROR' || err.code === 'MESSAGE_TOO_LARGE') this.emit('messageError', err);
        },
      );
    });
    this.activeRole = 'server';
  }
}

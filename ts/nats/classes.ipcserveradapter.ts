import * as plugins from './nats.plugins.js';
import { smartipc } from './nats.plugins.js';
import type { INatsExposableServer, INatsInvocation } from './interfaces.js';

/**
 * TEMPORARY: exposes an IpcServer through its public API only, until the core offers the
 * INatsExposableServer hooks itself. The adapter connects a client of its own to the server (on
 * its socket path or TCP port) and relays through it:
 * - requests and messages: `client.request` / `client.sendMessage` (one local round trip more; the
 *   handler sees the adapter's clientId, the NATS caller's id is in `context.headers.natsFrom`);
 * - local publishes: a subscription to `>` (the broker gives it every publish but its own);
 * - remote publishes: `client.publish` (local subscribers see the adapter's clientId as `from`);
 * - streams: `client.sendStream` (the server's `stream` event; `info.headers.natsFrom` names the sender).
 * It cannot list the server's handler types, so the exposure subscribes to every type; a host
 * without a handler answers NO_HANDLER even when another host has one.
 */
export class IpcServerNatsAdapter implements INatsExposableServer {
  public readonly id: string;
  public readonly serialization: smartipc.TSerialization;
  private client?: smartipc.IpcClient;

  constructor(private readonly server: smartipc.IpcServer) {
    this.id = server.options.id;
    this.serialization = server.options.serialization;
  }

  public async open(): Promise<void> {
    const address = this.server.getAddress();
    if (!address || !this.server.getIsRunning()) throw smartipc.invalidArgument(`expose(): start server "${this.id}" before exposing it`);
    if ('port' in address && this.server.options.endpoint.tls) {
      throw smartipc.invalidArgument(`expose(): server "${this.id}" uses TLS; the temporary adapter cannot connect to it (the core's expose hooks will)`);
    }
    const endpoint = 'socketPath' in address
      ? { socketPath: address.socketPath }
      : { host: address.host === '::' || address.host === '0.0.0.0' ? '127.0.0.1' : address.host, port: address.port };
    const client = new smartipc.IpcClient({
      id: this.id,
      ...endpoint,
      clientId: `nats-bridge-${plugins.crypto.randomBytes(6).toString('hex')}`,
      clientOnly: true,
      serialization: this.serialization,
      metadata: { natsBridge: true },
    });
    client.on('error', () => undefined);
    await client.connect();
    this.client = client;
  }

  public async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.disconnect();
  }

  public invoke(data: unknown, invocation: INatsInvocation): Promise<unknown> {
    const client = this.client;
    if (!client) return Promise.reject(new smartipc.IpcError('NOT_CONNECTED', `the adapter of "${this.id}" is closed`));
    if (!invocation.isRequest) return client.sendMessage(invocation.type, data);
    const timeout = invocation.deadline === undefined ? undefined : Math.max(1, invocation.deadline - Date.now());
    return client.request(invocation.type, data, {
      ...(timeout === undefined ? {} : { timeout }),
      headers: { ...invocation.headers, natsFrom: invocation.peerId },
    });
  }

  public async tapPublishes(listener: (topic: string, data: unknown, from: string) => void): Promise<() => void> {
    const client = this.client!;
    const handler: smartipc.TSubscriptionHandler = (data, info) => listener(info.topic, data, info.from);
    await client.subscribe('>', handler);
    return () => {
      client.unsubscribe('>', handler).catch(() => undefined);
    };
  }

  public publishLocal(topic: string, data: unknown): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new smartipc.IpcError('NOT_CONNECTED', `the adapter of "${this.id}" is closed`));
    return client.publish(topic, data);
  }

  public deliverStream(info: smartipc.IStreamInfo, readable: plugins.stream.Readable): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new smartipc.IpcError('NOT_CONNECTED', `the adapter of "${this.id}" is closed`));
    return client.sendStream(readable, {
      streamId: info.streamId,
      meta: info.meta,
      headers: { ...info.headers, natsFrom: info.peerId },
      objectMode: info.objectMode,
    });
  }
}

// A service instance in its own process, for test.services.ts (an instance that is SIGKILLed with
// calls in flight must really die: the kernel closes its socket, nothing says goodbye).
//   node --import tsx test/helpers/services-provider.ts <endpoint JSON> <hub id> <clientId> <service>
// Provides <service> with:
//   hold({ tag })       reports { event: 'invoked', tag } and answers { by, tag } once told to release
//   work({ tag, ms })   reports { event: 'invoked', tag } and answers { by, tag } after ms
// Reports { event: 'ready' } once the hub acknowledged the provide. IPC commands: { cmd: 'release' }
// (answer every held call), { cmd: 'stop' }.
import { SmartIpc, type IIpcClientOptions } from '../../ts/index.js';

const [endpointJson, id, clientId, service] = process.argv.slice(2);
if (!endpointJson || !id || !clientId || !service) {
  process.stderr.write('usage: services-provider.ts <endpoint JSON> <hub id> <clientId> <service>\n');
  process.exit(2);
}

const client = SmartIpc.createClient({ ...JSON.parse(endpointJson), id, clientId, clientOnly: true, reconnect: { enabled: false } } as IIpcClientOptions);
client.on('error', () => undefined);
const held: Array<() => void> = [];

function report(message: Record<string, unknown>): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  await client.connect();
  await client.provide(service, {
    hold: (params: { tag: number }) => {
      report({ event: 'invoked', tag: params.tag });
      return new Promise((resolve) => held.push(() => resolve({ by: clientId, tag: params.tag })));
    },
    work: (params: { tag: number; ms: number }) => {
      report({ event: 'invoked', tag: params.tag });
      return new Promise((resolve) => setTimeout(() => resolve({ by: clientId, tag: params.tag }), params.ms));
    },
  });
  report({ event: 'ready' });
}

process.on('message', (message: { cmd: string }) => {
  if (message.cmd === 'release') {
    for (const release of held.splice(0)) release();
    report({ event: 'released' });
  } else if (message.cmd === 'stop') {
    void client.disconnect().finally(() => process.exit(0));
  }
});
// The test that forked us is gone: do not outlive it.
process.on('disconnect', () => process.exit(0));

main().catch((err: Error) => {
  process.stderr.write(`services-provider: ${(err as { code?: string }).code ?? ''} ${err.stack ?? err.message}\n`);
  process.exit(1);
});

// services: what the hub's service registry holds, from its introspection answer.
import type { ICommand } from '../cli.command.js';
import { EXIT_OK } from '../cli.errors.js';
import { formatCount, formatTable, formatValue, type Painter } from '../cli.format.js';
import { SERVICES_REQUEST, introspect, type IIntrospectedService } from '../cli.introspection.js';

export function renderServices(services: IIntrospectedService[], painter: Painter): string {
  if (services.length === 0) return painter.paint('dim', 'no services registered');
  const rows: string[][] = [];
  for (const service of [...services].sort((a, b) => a.name.localeCompare(b.name))) {
    const instances = service.instances ?? [];
    if (instances.length === 0) rows.push([painter.paint('bold', service.name), painter.paint('dim', '(no instance)'), '', '', '', '']);
    instances.forEach((instance, i) => {
      rows.push([
        i === 0 ? painter.paint('bold', service.name) : '',
        instance.clientId,
        instance.version ?? painter.paint('dim', '-'),
        formatCount(instance.inFlight ?? 0),
        (instance.methods ?? []).join(', '),
        instance.metadata && Object.keys(instance.metadata).length > 0 ? formatValue(instance.metadata, painter, 0) : '',
      ]);
    });
  }
  return formatTable(['SERVICE', 'INSTANCE', 'VERSION', 'IN FLIGHT', 'METHODS', 'METADATA'], rows, painter);
}

export const services: ICommand = {
  name: 'services',
  summary: 'list the services the hub routes, with their instances and methods',
  arguments: [],
  description: [
    "Asks the server's introspection ($smartipc.services). One row per instance: the providing",
    "client, its version, its calls in flight and its methods. With --json: the array on one line.",
  ].join('\n'),
  examples: ['smartipc services --socket /tmp/demo.sock --id demo', "smartipc services --socket /tmp/demo.sock --id demo --json | jq '.[].name'"],
  async run({ connect, settings, out, signal }) {
    const client = await connect();
    const answer = await introspect<IIntrospectedService[]>(client, SERVICES_REQUEST, { timeout: settings.timeoutMs, signal });
    out.result(answer, renderServices(Array.isArray(answer) ? answer : [], out.out));
    return EXIT_OK;
  },
};

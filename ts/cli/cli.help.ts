// Help texts, built from the command definitions so they cannot drift from what is parsed.
import { ENDPOINT_OPTIONS, OUTPUT_OPTIONS, type TCliOptions } from './cli.args.js';
import type { ICommand } from './cli.command.js';

function usageOf(command: ICommand): string {
  const args = command.arguments.map((a) => (a.optional ? `[${a.name}]` : a.name)).join(' ');
  const own = Object.keys(command.options ?? {}).length > 0 ? ' [options]' : '';
  return `smartipc ${command.name}${args ? ` ${args}` : ''}${own} (--socket PATH | --host HOST --port PORT) [--id ID]`;
}

function optionLines(options: TCliOptions): string[] {
  const heads = Object.entries(options).map(([name, o]) => `${o.short ? `-${o.short}, ` : '    '}--${name}${o.value ? ` ${o.value}` : ''}`);
  const width = Math.max(...heads.map((h) => h.length));
  return Object.values(options).map((o, i) => `  ${heads[i].padEnd(width)}  ${o.description}`);
}

const FOOTER = [
  'Exit status: 0 success, 1 failure (the error code and message on stderr), 2 bad usage.',
  'Output is for people (colours on a terminal, never with NO_COLOR); --json prints one JSON',
  'document per line. Binary data in --json is {"$base64": "..."}.',
];

export function commandHelp(command: ICommand): string {
  const lines = [`smartipc ${command.name}: ${command.summary}`, '', `Usage: ${usageOf(command)}`, '', command.description];
  if (command.arguments.length > 0) {
    const width = Math.max(...command.arguments.map((a) => a.name.length));
    lines.push('', 'Arguments:', ...command.arguments.map((a) => `  ${a.name.padEnd(width)}  ${a.description}`));
  }
  if (command.options && Object.keys(command.options).length > 0) lines.push('', 'Options:', ...optionLines(command.options));
  lines.push('', 'Endpoint:', ...optionLines(ENDPOINT_OPTIONS), '', 'Output:', ...optionLines(OUTPUT_OPTIONS));
  lines.push('', 'Examples:', ...command.examples.map((e) => `  ${e}`), '', ...FOOTER);
  return lines.join('\n');
}

export function mainHelp(commands: readonly ICommand[], version: string): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `smartipc ${version}: inspect and drive a live smartipc endpoint`,
    '',
    'Usage: smartipc COMMAND [arguments] (--socket PATH | --host HOST --port PORT) [--id ID] [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Endpoint (every command):',
    ...optionLines(ENDPOINT_OPTIONS),
    '',
    'Output:',
    ...optionLines({ ...OUTPUT_OPTIONS, version: { type: 'boolean', description: 'print the version' } }),
    '',
    'Examples:',
    '  smartipc ping --socket /tmp/demo.sock',
    `  smartipc request add '{"a":20,"b":22}' --socket /tmp/demo.sock --id demo`,
    "  smartipc subscribe 'jobs.*' --socket /tmp/demo.sock --id demo",
    '  smartipc stats --socket /tmp/demo.sock --id demo --json',
    '',
    "Run 'smartipc COMMAND --help' for a command's arguments and examples.",
    ...FOOTER,
  ].join('\n');
}

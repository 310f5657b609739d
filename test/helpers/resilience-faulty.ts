// A server script that fails, for the spawnAndConnect tests.
//   node --import tsx test/helpers/resilience-faulty.ts <mode>
// mode 'crash': complains on stderr and exits with code 3 before serving.
// mode 'stuck': writes its pid to $RESILIENCE_PID_FILE, complains on stderr, never serves.
import * as fs from 'node:fs';

const mode = process.argv[2];
if (mode === 'crash') {
  process.stderr.write('resilience-faulty: loading config\n');
  process.stderr.write('resilience-faulty: fatal: config file is missing\n');
  process.exit(3);
} else if (mode === 'stuck') {
  if (process.env.RESILIENCE_PID_FILE) fs.writeFileSync(process.env.RESILIENCE_PID_FILE, String(process.pid));
  process.stderr.write('resilience-faulty: waiting for a database that never comes\n');
  setInterval(() => undefined, 1_000);
  process.on('disconnect', () => undefined); // stays even when the parent lets go: the caller must kill it
} else {
  process.stderr.write(`usage: resilience-faulty.ts crash|stuck (got ${mode})\n`);
  process.exit(2);
}

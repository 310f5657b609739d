// What the runner, the scenarios and their child processes (roles) say to each other over Node's
// IPC channel. Kept apart so both sides import the same shapes.

/** One scenario's result: the row printed by the runner and kept in the JSON file. */
export interface IRow {
  /** '1' .. '11' */
  id: string;
  scenario: string;
  /** What it was put under ("110,000 requests over 101 connections"). */
  load: string;
  /** The faults injected ("SIGKILL with 1,000 pending"; "-" for none). */
  faults: string;
  /** The bad input fed ("10,000 malformed frames"; "-" for none). */
  badInputs: string;
  /** What was lost: "0" when nothing was, or what and how much. */
  lost: string;
  /** The headline figures, against their bounds. */
  figure: string;
  pass: boolean;
  /** Each bound missed, with its measured figure. */
  failures: string[];
  /** Every figure measured, for the JSON file. */
  figures: Record<string, number | string | boolean | null>;
  durationMs: number;
}

/** Scenario -> runner. */
export type TScenarioMessage = { t: 'row'; row: IRow } | { t: 'progress'; text: string };

/** The configuration a scenario process gets as argv[2]. */
export interface IScenarioConfig {
  id: string;
  profile: 'quick' | 'full';
  /** The runner kills the scenario's process group after this. */
  hardTimeoutMs: number;
  /** Where child processes write CPU profiles (--cpu-prof), if asked. */
  cpuProfDir?: string;
}

/** Parent -> role. */
export interface IRoleCall {
  t: 'call';
  id: number;
  cmd: string;
  args?: unknown;
}

/** Role -> parent. */
export type TRoleMessage =
  | { t: 'ready'; data: unknown }
  | { t: 'event'; name: string; data: unknown }
  | { t: 'reply'; id: number; ok: true; result: unknown }
  | { t: 'reply'; id: number; ok: false; error: { message: string; code?: string } }
  | { t: 'fatal'; message: string };

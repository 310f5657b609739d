// Counts the timers alive in this process, unref'd ones included (process.getActiveResourcesInfo
// lists only those that keep the process alive, and every library timer is unref'd). Uses an
// async hook, which slows promises down: only for scenarios that check timers, not latency.
import { createHook } from 'node:async_hooks';

export interface ITimerTracker {
  /** Timeouts (setTimeout and setInterval) created and not yet fired-and-done or cleared. */
  live(): number;
  stop(): void;
}

export function trackTimers(): ITimerTracker {
  const alive = new Set<number>();
  const hook = createHook({
    init(asyncId, type) {
      if (type === 'Timeout') alive.add(asyncId);
    },
    destroy(asyncId) {
      alive.delete(asyncId);
    },
  });
  hook.enable();
  return { live: () => alive.size, stop: () => hook.disable() };
}

// Feature detection: streams and pub/sub land in the library separately; a scenario that needs a
// missing one is skipped with a note instead of failing.

const NEEDS = {
  S5: { methods: ['sendStream'], feature: 'streams' },
  S6: { methods: ['subscribe', 'publish'], feature: 'pub/sub' },
  S7: { methods: ['sendStream'], feature: 'streams' },
};

/** undefined when the client can run the scenario, else a sentence saying what is missing. */
export function missingFeature(client, scenario) {
  const need = NEEDS[scenario];
  if (!need) return undefined;
  const missing = need.methods.filter((name) => typeof client[name] !== 'function');
  if (missing.length === 0) return undefined;
  return `smartipc has no ${need.feature} yet (IpcClient lacks ${missing.join(', ')})`;
}

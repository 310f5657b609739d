// Small statistics used by the children (percentiles) and the runner (medians).

/** The q-quantile (0..1) of the numbers, nearest-rank on a sorted copy. */
export function quantile(values, q) {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

export function median(values) {
  const finite = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  if (finite.length === 0) return undefined;
  const sorted = finite.sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Latency summary in microseconds from durations in milliseconds. */
export function latencySummary(durationsMs) {
  return {
    p50Us: quantile(durationsMs, 0.5) * 1000,
    p99Us: quantile(durationsMs, 0.99) * 1000,
    samples: durationsMs.length,
  };
}

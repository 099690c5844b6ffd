// Self time per function from a V8 CPU profile (`node --cpu-prof`), the way
// Chrome's "bottom-up" view counts it, over the last `windowS` seconds only
// (the measured load, not the start-up). bench:dns prints these for ours
// and the bare Node server (BENCH_DNS_PROFILE).
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** [{frame, share}] of the samples in the profile's last `windowS` seconds, largest first. */
export function selfTimeTop(file, windowS, top = 15) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  // Sample times: startTime plus the running sum of timeDeltas (µs).
  const times = [];
  let t = profile.startTime;
  for (const delta of profile.timeDeltas) times.push((t += delta));
  const from = profile.endTime - windowS * 1e6;
  const counts = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    if (times[i] < from) return;
    const { functionName, url, lineNumber } = nodes.get(id).callFrame;
    const where = url === '' ? '' : ` ${url.replace(/^.*\/(dist|bench|node_modules)\//, '$1/').replace(/^node:/, 'node:')}:${lineNumber + 1}`;
    const frame = `${functionName || '(anonymous)'}${where}`;
    counts.set(frame, (counts.get(frame) ?? 0) + 1);
    total++;
  });
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, top).map(([frame, n]) => ({ frame, share: n / total }));
}

/** The one .cpuprofile a process wrote into `dir`. */
export function profileIn(dir) {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) throw new Error(`no .cpuprofile in ${dir}`);
  return join(dir, file);
}

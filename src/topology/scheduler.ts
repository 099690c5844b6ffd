/**
 * Places service instances on hosts.
 *
 * Rendezvous (highest random weight) hashing: every (service, host) pair
 * gets a score and a service runs on its best-scoring candidates, at most
 * one instance per host. Adding or removing one of N hosts only moves the
 * instances that hashed to it: about 1/N of them.
 *
 * Load spread: each host gets a capacity of (1 + loadFactor) x its expected
 * load (the share of instances it would get if every service spread evenly
 * over its candidates). A host at capacity is passed over in favour of the
 * next-best candidate, so no host collects far more than its share by luck
 * of the hash. Capacities depend only on the inputs, not on processing order,
 * which keeps placement stable.
 *
 * The inputs are trusted: validation has already checked counts, groups and
 * schedule_with targets.
 */
import { nameHash, scoreParts } from './hash.js';
import type { NameHash } from './hash.js';

export interface ScheduleRequest {
  readonly name: string;
  /** Hosts that may run the service (sorted order not required). */
  readonly candidates: readonly string[];
  /** Instances wanted; null runs one on every candidate. */
  readonly count: number | null;
  readonly masterElection: boolean;
  /** Hosts allowed to be master; null means any instance. */
  readonly masterCandidates: readonly string[] | null;
  /** Run exactly where this other service runs. */
  readonly scheduleWith: string | null;
}

export interface Placement {
  /** Hosts running the service, sorted by name. */
  readonly hosts: readonly string[];
  readonly master: string | null;
}

export interface ScheduleOptions {
  /** Headroom over a host's expected load before it is passed over; Infinity disables. */
  readonly loadFactor?: number;
}

export const DEFAULT_LOAD_FACTOR = 0.25;

export function schedule(requests: readonly ScheduleRequest[], options: ScheduleOptions = {}): Map<string, Placement> {
  const loadFactor = options.loadFactor ?? DEFAULT_LOAD_FACTOR;
  const byName = new Map(requests.map((r) => [r.name, r]));
  const hashOf = hostHashTables();

  const capacity = capacities(requests, loadFactor);
  const load = new Map<string, number>();
  const placed = new Map<string, string[]>();
  const take = (service: string, hosts: string[]): void => {
    for (const host of hosts) load.set(host, (load.get(host) ?? 0) + 1);
    placed.set(service, hosts);
  };

  // Services on every candidate first: they have no choice, and the others
  // then see the load those leave.
  const direct = requests.filter((r) => r.scheduleWith === null).sort((a, b) => compareNames(a.name, b.name));
  for (const request of direct) {
    if (request.count === null || request.count >= request.candidates.length) take(request.name, [...request.candidates]);
  }
  for (const request of direct) {
    if (placed.has(request.name)) continue;
    take(request.name, pick(request, hashOf, load, capacity));
  }
  // schedule_with: copy the target's hosts, following chains.
  const resolveWith = (name: string): string[] => {
    const existing = placed.get(name);
    if (existing !== undefined) return existing;
    const request = byName.get(name);
    const hosts = request?.scheduleWith == null ? [] : [...resolveWith(request.scheduleWith)];
    take(name, hosts);
    return hosts;
  };
  for (const request of requests) resolveWith(request.name);

  const result = new Map<string, Placement>();
  for (const request of requests) {
    const hosts = [...(placed.get(request.name) ?? [])].sort(compareNames);
    result.set(request.name, { hosts, master: request.masterElection ? electMaster(request, hosts, hashOf) : null });
  }
  return result;
}

/** ceil((1 + loadFactor) x expected load) per host; Infinity when disabled. */
function capacities(requests: readonly ScheduleRequest[], loadFactor: number): Map<string, number> {
  const expected = new Map<string, number>();
  // Services given the same candidate list (compile shares one array per
  // group set) share one pass over its hosts.
  const shareBySet = new Map<readonly string[], number>();
  for (const request of requests) {
    if (request.scheduleWith !== null || request.candidates.length === 0) continue;
    const count = request.count === null ? request.candidates.length : Math.min(request.count, request.candidates.length);
    shareBySet.set(request.candidates, (shareBySet.get(request.candidates) ?? 0) + count / request.candidates.length);
  }
  for (const [hosts, share] of shareBySet) {
    for (const host of hosts) expected.set(host, (expected.get(host) ?? 0) + share);
  }
  const capacity = new Map<string, number>();
  for (const [host, value] of expected) {
    capacity.set(host, Number.isFinite(loadFactor) ? Math.max(1, Math.ceil(value * (1 + loadFactor) - 1e-9)) : Infinity);
  }
  return capacity;
}

/** Host name hashes of one candidate list, as parallel typed arrays. */
interface HashTable {
  readonly a: Uint32Array;
  readonly b: Uint32Array;
}
type HashTables = (candidates: readonly string[]) => HashTable;

/**
 * Hashes per candidate list, computed once: compile hands every service of
 * the same groups the same array, so a 10,000-host group is hashed once, not
 * once per service.
 */
function hostHashTables(): HashTables {
  const byName = new Map<string, NameHash>();
  const byList = new WeakMap<readonly string[], HashTable>();
  return (candidates) => {
    let table = byList.get(candidates);
    if (table === undefined) {
      const a = new Uint32Array(candidates.length);
      const b = new Uint32Array(candidates.length);
      candidates.forEach((host, i) => {
        let hash = byName.get(host);
        if (hash === undefined) {
          hash = nameHash(host, 'host');
          byName.set(host, hash);
        }
        a[i] = hash.a;
        b[i] = hash.b;
      });
      table = { a, b };
      byList.set(candidates, table);
    }
    return table;
  };
}

/** The best `limit` candidates by score, best first (ties by name). */
function rank(service: NameHash, candidates: readonly string[], hashOf: HashTables, limit: number): string[] {
  const { a, b } = hashOf(candidates);
  const n = candidates.length;
  const weights = new Float64Array(n);
  for (let i = 0; i < n; i++) weights[i] = scoreParts(service.a, service.b, a[i] as number, b[i] as number);
  // Negative: i ranks before j.
  const before = (i: number, j: number): number =>
    (weights[j] as number) - (weights[i] as number) || compareNames(candidates[i] as string, candidates[j] as string);
  if (limit * 8 >= n) {
    const order = Array.from({ length: n }, (_, i) => i).sort(before);
    return order.map((i) => candidates[i] as string);
  }
  // Partial selection: keep the best `limit` indices in a small sorted array.
  const best: number[] = [];
  for (let i = 0; i < n; i++) {
    if (best.length === limit && before(i, best[limit - 1] as number) >= 0) continue;
    let lo = 0;
    let hi = best.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(best[mid] as number, i) <= 0) lo = mid + 1;
      else hi = mid;
    }
    best.splice(lo, 0, i);
    if (best.length > limit) best.pop();
  }
  return best.map((i) => candidates[i] as string);
}

function pick(
  request: ScheduleRequest,
  hashOf: HashTables,
  load: Map<string, number>,
  capacity: Map<string, number>,
): string[] {
  const count = Math.min(request.count ?? request.candidates.length, request.candidates.length);
  const service = nameHash(request.name, 'service');
  const hasRoom = (host: string): boolean => (load.get(host) ?? 0) < (capacity.get(host) ?? Infinity);
  const chosen: string[] = [];
  const chosenSet = new Set<string>();
  const choose = (host: string): void => {
    chosen.push(host);
    chosenSet.add(host);
  };

  // With a master group, the best candidate inside it is placed first so a
  // master can always be elected there.
  if (request.masterCandidates !== null) {
    const allowed = new Set(request.masterCandidates);
    const inGroup = rank(service, request.candidates.filter((h) => allowed.has(h)), hashOf, Infinity);
    const first = inGroup.find(hasRoom) ?? inGroup[0];
    if (first !== undefined) choose(first);
  }

  let limit = Math.min(request.candidates.length, count * 2 + 16);
  for (;;) {
    const ranked = rank(service, request.candidates, hashOf, limit);
    for (const host of ranked) {
      if (chosen.length >= count) break;
      if (!chosenSet.has(host) && hasRoom(host)) choose(host);
    }
    if (chosen.length >= count || limit >= request.candidates.length) break;
    limit = request.candidates.length;
  }
  if (chosen.length < count) {
    // Every candidate is at capacity: fall back to plain rendezvous order.
    for (const host of rank(service, request.candidates, hashOf, Infinity)) {
      if (chosen.length >= count) break;
      if (!chosenSet.has(host)) choose(host);
    }
  }
  return chosen;
}

/** The highest-scoring instance (within the master group, if one is set). */
function electMaster(request: ScheduleRequest, hosts: readonly string[], hashOf: HashTables): string | null {
  const allowed = request.masterCandidates === null ? null : new Set(request.masterCandidates);
  const eligible = allowed === null ? hosts : hosts.filter((h) => allowed.has(h));
  const master = nameHash(request.name, 'master');
  return rank(master, eligible, hashOf, Infinity)[0] ?? null;
}

/** Code-unit order: the same on every machine and locale. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Placement must be deterministic (same inputs, same answer, whatever the
 * order), stable (one host more or less moves about 1/N of instances), and
 * spread load, with masters among the hosts that run the service.
 */
import { describe, expect, it } from 'vitest';
import { schedule } from '../src/topology/index.js';
import type { Placement, ScheduleRequest } from '../src/topology/testing.js';

const hostsNamed = (n: number, prefix = 'host'): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

function requests(hosts: readonly string[], services = 1000): ScheduleRequest[] {
  return Array.from({ length: services }, (_, s) => ({
    name: `svc-${s}`,
    candidates: hosts,
    count: 1 + (s % 5),
    masterElection: s % 4 === 0,
    masterCandidates: null,
    scheduleWith: null,
  }));
}

/** Instances whose host is no longer in the service's placement, over all instances. */
function movedFraction(before: Map<string, Placement>, after: Map<string, Placement>): number {
  let moved = 0;
  let total = 0;
  for (const [name, placement] of before) {
    const now = new Set(after.get(name)?.hosts);
    for (const host of placement.hosts) if (!now.has(host)) moved++;
    total += placement.hosts.length;
  }
  return moved / total;
}

function maxLoad(placements: Map<string, Placement>): number {
  const load = new Map<string, number>();
  for (const p of placements.values()) for (const h of p.hosts) load.set(h, (load.get(h) ?? 0) + 1);
  return Math.max(...load.values());
}

function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe('scheduler', () => {
  it('places the requested number of instances, at most one per host', () => {
    const placements = schedule(requests(hostsNamed(50), 200));
    for (const [name, placement] of placements) {
      const wanted = 1 + (Number(name.slice(4)) % 5);
      expect(placement.hosts).toHaveLength(wanted);
      expect(new Set(placement.hosts).size).toBe(wanted);
    }
  });

  it('gives the same placement whatever the order of hosts and services', () => {
    const hosts = hostsNamed(200);
    const reference = schedule(requests(hosts, 300));
    const reordered = requests(shuffled(hosts, 7), 300).reverse();
    expect(schedule(reordered)).toEqual(reference);
  });

  it('moves about 1/N of instances when one host of N is added or removed', () => {
    const hosts = hostsNamed(1000);
    const before = schedule(requests(hosts));
    const removals = ['host-3', 'host-77', 'host-150', 'host-400', 'host-999'].map((gone) =>
      movedFraction(before, schedule(requests(hosts.filter((h) => h !== gone)))),
    );
    const additions = ['new-a', 'new-b', 'new-c', 'new-d', 'new-e'].map((added) => movedFraction(before, schedule(requests([...hosts, added]))));
    const average = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    // Ideal is 1/N = 0.001; a reshuffle would move most of them.
    expect(average(removals)).toBeLessThan(3 / 1000);
    expect(average(additions)).toBeLessThan(3 / 1000);
    expect(average(removals)).toBeGreaterThan(0);
  });

  it('spreads load better than plain rendezvous hashing', () => {
    const hosts = hostsNamed(1000);
    const bounded = schedule(requests(hosts));
    const plain = schedule(requests(hosts), { loadFactor: Infinity });
    // 3,000 instances on 1,000 hosts: expected load 3, capacity ceil(3 x 1.25) = 4.
    expect(maxLoad(bounded)).toBeLessThanOrEqual(4);
    expect(maxLoad(plain)).toBeGreaterThan(maxLoad(bounded));
  });

  it('runs a service on every candidate when no count is given', () => {
    const hosts = hostsNamed(10);
    const placements = schedule([{ name: 'everywhere', candidates: hosts, count: null, masterElection: false, masterCandidates: null, scheduleWith: null }]);
    expect(placements.get('everywhere')?.hosts).toEqual([...hosts].sort());
  });

  it('elects the master among the instances, inside the master group', () => {
    const hosts = hostsNamed(30);
    const masterGroup = ['host-5', 'host-6'];
    const placements = schedule(
      Array.from({ length: 40 }, (_, s) => ({
        name: `db-${s}`,
        candidates: hosts,
        count: 3,
        masterElection: true,
        masterCandidates: masterGroup,
        scheduleWith: null,
      })),
    );
    for (const placement of placements.values()) {
      expect(placement.master).not.toBeNull();
      expect(placement.hosts).toContain(placement.master);
      expect(masterGroup).toContain(placement.master);
    }
  });

  it('keeps the master when a host that is not the master leaves', () => {
    const hosts = hostsNamed(100);
    const before = schedule(requests(hosts, 200));
    let checked = 0;
    for (const [name, placement] of before) {
      if (placement.master === null) continue;
      const bystander = hosts.find((h) => h !== placement.master && !placement.hosts.includes(h)) as string;
      const after = schedule(requests(hosts.filter((h) => h !== bystander), 200)).get(name);
      if (after?.hosts.includes(placement.master)) {
        expect(after.master).toBe(placement.master);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(20);
  });

  it('places schedule_with services exactly where their target runs, through chains', () => {
    const hosts = hostsNamed(20);
    const placements = schedule([
      { name: 'db', candidates: hosts, count: 3, masterElection: false, masterCandidates: null, scheduleWith: null },
      { name: 'backup', candidates: [], count: null, masterElection: false, masterCandidates: null, scheduleWith: 'exporter' },
      { name: 'exporter', candidates: [], count: null, masterElection: true, masterCandidates: null, scheduleWith: 'db' },
    ]);
    const db = placements.get('db')?.hosts;
    expect(db).toHaveLength(3);
    expect(placements.get('exporter')?.hosts).toEqual(db);
    expect(placements.get('backup')?.hosts).toEqual(db);
    expect(db).toContain(placements.get('exporter')?.master);
  });
});

/**
 * LiveTopology against real files in a temp dir: edits, atomic renames,
 * bursts, broken and fixed inputs, includes added later, and the promises
 * it makes to subscribers (one reload at a time, errors isolated).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../src/lib/atomic-write.js';
import { LiveTopology, diffTopologies, isEmptyDiff, topologyFileSource, writeTopology } from '../src/topology/index.js';
import { configSource } from '../src/config/index.js';
import type { ReloadOutcome, Topology, TopologyChange } from '../src/topology/index.js';
import { compileMesh, silentLogger, writeMesh } from './support/dns.js';
import type { MeshHost, MeshSpec } from './support/dns.js';
import { tempDir } from './support/run.js';
import { waitFor, within } from './support/wait.js';

const work = tempDir('topology-live');
afterAll(() => work.remove());

const opened: LiveTopology[] = [];
afterEach(() => {
  for (const live of opened.splice(0)) live.close();
});

const HOSTS: readonly MeshHost[] = [
  { name: 'h1', ips: ['127.0.20.1'], groups: ['app', 'g1'] },
  { name: 'h2', ips: ['127.0.20.2'], groups: ['app', 'g2'] },
  { name: 'h3', ips: ['127.0.20.3'], groups: ['app'] },
];
const SERVICES = 'web:\n  scheduling_group: g1\ndb:\n  scheduling_group: app\n';

function spec(hosts: readonly MeshHost[] = HOSTS, services = SERVICES): MeshSpec {
  return { overlays: [{ name: 'ova', network: '100.64.20.0/24', port: 6560 }], hosts, services };
}

let dirs = 0;
function freshDir(): string {
  const dir = join(work.path, `case-${++dirs}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A started LiveTopology recording its changes, failures and outcomes. */
function follow(source: ConstructorParameters<typeof LiveTopology>[0], debounceMs = 100) {
  const live = new LiveTopology(source, { logger: silentLogger, debounceMs });
  opened.push(live);
  const changes: TopologyChange[] = [];
  const errors: { error: Error; reason: string }[] = [];
  const outcomes: ReloadOutcome[] = [];
  live.subscribe((change) => void changes.push(change));
  live.onError((error, reason) => void errors.push({ error, reason }));
  live.onOutcome((outcome) => void outcomes.push(outcome));
  live.start();
  return { live, changes, errors, outcomes };
}

/** The same mesh under another domain, consistent as a compile would make it (host FQDNs follow). */
function withDomain(topology: Topology, domain: string): Topology {
  const hosts = Object.fromEntries(Object.entries(topology.hosts).map(([name, host]) => [name, { ...host, fqdn: `${name}.${domain}` }]));
  return { ...topology, domain, hosts };
}

/** The same hosts without any service, consistent as a compile would make it. */
function withoutServices(topology: Topology): Topology {
  const hosts = Object.fromEntries(Object.entries(topology.hosts).map(([name, host]) => [name, { ...host, services: [], masters: [], credentials: [] }]));
  return { ...topology, hosts, services: {}, credentials: {} };
}

async function until(what: string, check: () => boolean): Promise<void> {
  await waitFor(check, { what, interval: 20 });
}

describe('diffTopologies', () => {
  it('finds nothing between a topology and itself', () => {
    const topology = compileMesh(freshDir(), spec());
    expect(isEmptyDiff(diffTopologies(topology, topology))).toBe(true);
  });

  it('sees a change of pki_policy alone (pki serve and up follow it)', () => {
    const topology = compileMesh(freshDir(), spec());
    const policy = { leaf_lifetime_ms: 24 * 3600_000, crl_lifetime_ms: 7 * 86_400_000, crl_refresh_ms: 3600_000 };
    const diff = diffTopologies(topology, { ...topology, pki: policy });
    expect(isEmptyDiff(diff)).toBe(false);
    expect(diff.pkiPolicyChanged).toBe(true);
    expect(diffTopologies({ ...topology, pki: policy }, { ...topology, pki: { ...policy } }).pkiPolicyChanged).toBe(false);
  });
});

describe('LiveTopology following services.yml + inventory', () => {
  it('fires one change per edit with its diff: move, add and remove an instance, change an address', async () => {
    const dir = freshDir();
    const paths = writeMesh(dir, spec());
    const { live, changes } = follow(configSource(paths.services, paths.inventory));
    expect(Object.keys(live.current.services).sort()).toEqual(['db', 'web']);

    // Move web from h1 to h2: one instance removed, one added.
    writeFileAtomic(paths.services, SERVICES.replace('g1', 'g2'));
    await until('the move seen', () => changes.length === 1);
    expect(changes[0]!.reason).toBe('file changed');
    expect(changes[0]!.diff).toMatchObject({
      instancesRemoved: [{ service: 'web', host: 'h1' }],
      instancesAdded: [{ service: 'web', host: 'h2' }],
      servicesChanged: ['web'],
      servicesAdded: [],
      servicesRemoved: [],
      hostsChanged: ['h1', 'h2'],
    });
    expect(live.current.services['web']!.instances.map((i) => i.host)).toEqual(['h2']);

    // A new host in the app group: db gets an instance there.
    const withH4 = [...HOSTS, { name: 'h4', ips: ['127.0.20.4'], groups: ['app'] }];
    writeMesh(dir, spec(withH4, SERVICES.replace('g1', 'g2')));
    await until('the new host seen', () => changes.length === 2);
    expect(changes[1]!.diff).toMatchObject({ hostsAdded: ['h4'], instancesAdded: [{ service: 'db', host: 'h4' }], instancesRemoved: [], servicesChanged: ['db'] });

    // An address change: the host and the services with an instance there change, no instance moves.
    const moved = withH4.map((h) => (h.name === 'h3' ? { ...h, ips: ['127.0.20.33'] } : h));
    writeMesh(dir, spec(moved, SERVICES.replace('g1', 'g2')));
    await until('the address change seen', () => changes.length === 3);
    expect(changes[2]!.diff).toMatchObject({ hostsChanged: ['h3'], hostsAdded: [], hostsRemoved: [], instancesAdded: [], instancesRemoved: [], servicesChanged: ['db'] });
    expect(live.current.hosts['h3']!.ips).toEqual(['127.0.20.33']);

    // The host goes again: its instance is removed.
    writeMesh(dir, spec(moved.filter((h) => h.name !== 'h4'), SERVICES.replace('g1', 'g2')));
    await until('the removed host seen', () => changes.length === 4);
    expect(changes[3]!.diff).toMatchObject({ hostsRemoved: ['h4'], instancesRemoved: [{ service: 'db', host: 'h4' }], instancesAdded: [] });
    expect(changes[3]!.previous).toBe(changes[2]!.current);
    await live.idle();
    expect(changes).toHaveLength(4);
  });

  it('keeps the old topology on a bad edit, reports it, and applies the fix', async () => {
    const dir = freshDir();
    const paths = writeMesh(dir, spec());
    const { live, changes, errors } = follow(configSource(paths.services, paths.inventory));
    const before = live.current;

    writeFileAtomic(paths.services, 'web:\n  scheduling_group: [unclosed\n');
    await until('the bad edit reported', () => errors.length === 1);
    expect(errors[0]!.reason).toBe('file changed');
    expect((errors[0]!.error as { code?: string }).code).toBe('TOPOLOGY_ERR_CONFIG');
    expect(live.current).toBe(before);
    expect(changes).toHaveLength(0);

    writeFileAtomic(paths.services, `${SERVICES}cache:\n  scheduling_group: app\n`);
    await until('the fix applied', () => changes.length === 1);
    expect(changes[0]!.diff.servicesAdded).toEqual(['cache']);
    expect(live.current.services['cache']).toBeDefined();
  });

  it('fires nothing when the content compiles to the same topology', async () => {
    const dir = freshDir();
    const paths = writeMesh(dir, spec());
    const { live, changes, outcomes } = follow(configSource(paths.services, paths.inventory));
    // Same meaning, other bytes: a comment.
    writeFileAtomic(paths.services, `# a comment\n${SERVICES}`);
    await until('the edit looked at', () => outcomes.length === 1);
    expect(outcomes).toEqual(['unchanged']);
    await live.idle();
    expect(changes).toHaveLength(0);
    expect(await live.reload('SIGHUP')).toBe('unchanged');
  });

  it('watches a file once an include names it', async () => {
    const dir = freshDir();
    const paths = writeMesh(dir, spec());
    const { live, changes } = follow(configSource(paths.services, paths.inventory));
    mkdirSync(join(dir, 'more'));
    writeFileSync(join(dir, 'more', 'extra.yml'), 'cache:\n  scheduling_group: app\n');
    // Nothing watches more/ yet: only the include makes it an input.
    writeFileAtomic(paths.services, `include: more/extra.yml\n${SERVICES}`);
    await until('the include applied', () => changes.length === 1);
    expect(changes[0]!.diff.servicesAdded).toEqual(['cache']);

    writeFileAtomic(join(dir, 'more', 'extra.yml'), 'cache:\n  scheduling_group: g1\n');
    await until('the edit of the included file applied', () => changes.length === 2);
    expect(changes[1]!.diff.instancesRemoved.map((i) => i.host)).toEqual(['h2', 'h3']);
    expect(live.current.services['cache']!.instances.map((i) => i.host)).toEqual(['h1']);
  });

  it('refuses a reload into no services unless allow_no_services says so', async () => {
    const dir = freshDir();
    const file = join(dir, 'topology.json');
    const full = compileMesh(dir, spec());
    writeTopology(file, full);
    const { live, changes, errors } = follow(topologyFileSource(file));
    const before = live.current;
    const empty = withoutServices(full);
    writeTopology(file, empty);
    expect(await live.reload('SIGHUP')).toBe('failure');
    expect((errors.at(-1)!.error as { code?: string }).code).toBe('TOPOLOGY_ERR_NO_SERVICES');
    expect(live.current).toBe(before);
    expect(Object.keys(live.current.services)).toHaveLength(2);

    writeTopology(file, { ...empty, allow_no_services: true });
    expect(await live.reload('SIGHUP')).toBe('success');
    expect(changes.at(-1)!.diff.servicesRemoved).toEqual(['db', 'web']);
  });
});

describe('LiveTopology following a compiled topology.json', () => {
  it('sees an atomic rename over the file', async () => {
    const dir = freshDir();
    const file = join(dir, 'topology.json');
    writeTopology(file, compileMesh(dir, spec()));
    const { live, changes } = follow(topologyFileSource(file));
    const next = compileMesh(dir, spec(HOSTS, `${SERVICES}cache:\n  scheduling_group: g2\n`));
    writeFileSync(join(dir, 'next.tmp'), JSON.stringify(next));
    renameSync(join(dir, 'next.tmp'), file);
    await until('the renamed file applied', () => changes.length === 1);
    expect(changes[0]!.diff.servicesAdded).toEqual(['cache']);
    expect(changes[0]!.diff.instancesAdded).toEqual([{ service: 'cache', host: 'h2' }]);
    expect(live.current.services['cache']).toBeDefined();
  });

  it('debounces a burst of writes into one reload', async () => {
    const dir = freshDir();
    const file = join(dir, 'topology.json');
    const base = compileMesh(dir, spec());
    writeTopology(file, base);
    // A long settle time so the whole burst falls inside it on a busy machine too.
    const { live, changes, outcomes } = follow(topologyFileSource(file), 400);
    for (let i = 1; i <= 20; i++) writeTopology(file, withDomain(base, `burst${i}.internal`));
    await until('the burst applied', () => changes.length >= 1);
    await live.idle();
    expect(outcomes).toEqual(['success']);
    expect(changes).toHaveLength(1);
    expect(changes[0]!.current.domain).toBe('burst20.internal');
    expect(changes[0]!.diff.domainChanged).toBe(true);
  });
});

describe('LiveTopology subscribers', () => {
  function twoVersions(): { file: string; a: Topology; b: Topology; c: Topology } {
    const dir = freshDir();
    const file = join(dir, 'topology.json');
    const a = compileMesh(dir, spec());
    writeTopology(file, a);
    return { file, a, b: withDomain(a, 'b.internal'), c: withDomain(a, 'c.internal') };
  }

  it('isolates a subscriber that throws: the others still get the change', async () => {
    const { file, b } = twoVersions();
    const live = new LiveTopology(topologyFileSource(file), { logger: silentLogger, watch: false });
    opened.push(live);
    const seen: string[] = [];
    live.subscribe(() => {
      seen.push('first');
      throw new Error('boom');
    });
    live.subscribe(async () => {
      await Promise.resolve();
      throw new Error('async boom');
    });
    live.subscribe((change) => void seen.push(`third:${change.current.domain}`));
    live.start();
    writeTopology(file, b);
    expect(await live.reload('SIGHUP')).toBe('success');
    expect(seen).toEqual(['first', 'third:b.internal']);
    expect(live.current.domain).toBe('b.internal');
  });

  it('never runs two reloads at once, and coalesces those asked for meanwhile', async () => {
    const { file, b, c } = twoVersions();
    const live = new LiveTopology(topologyFileSource(file), { logger: silentLogger, watch: false });
    opened.push(live);
    let running = 0;
    let most = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const domains: string[] = [];
    live.subscribe(async (change) => {
      running++;
      most = Math.max(most, running);
      domains.push(change.current.domain);
      if (domains.length === 1) await gate;
      running--;
    });
    live.start();
    writeTopology(file, b);
    const first = live.reload('one');
    // The first reload is waiting on its subscriber: these two queue as one.
    await until('the first subscriber called', () => domains.length === 1);
    writeTopology(file, c);
    const second = live.reload('two');
    const third = live.reload('three');
    expect(third).toBe(second);
    let idle = false;
    void live.idle().then(() => (idle = true));
    release();
    expect(await within(first, { what: 'first reload' })).toBe('success');
    expect(await within(second, { what: 'queued reload' })).toBe('success');
    await within(live.idle(), { what: 'idle' });
    expect(idle).toBe(true);
    expect(most).toBe(1);
    expect(domains).toEqual(['b.internal', 'c.internal']);
  });
});

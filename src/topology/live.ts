/**
 * One live Topology for a daemon: loads its source once, then follows edits
 * of the source's files (debounced: editors and atomic renames fire several
 * events) or an explicit reload (SIGHUP). A load that fails keeps the last
 * good Topology; an identical one changes nothing. Subscribers get the
 * accepted changes with a diff, in order, one reload at a time.
 *
 * This is the only place that watches topology files: DNS, the gateway, the
 * agent and `up` all follow the same rules this way.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { MeshplaneError } from '../errors.js';
import { serializeTopology } from './io.js';
import { watchedDirectories } from './source.js';
import type { TopologySource } from './source.js';
import type { Topology } from './types.js';

export interface TopologyDiff {
  readonly servicesAdded: readonly string[];
  readonly servicesRemoved: readonly string[];
  /** Services present before and after whose entry changed in any way (instances, ports, endpoints, credentials...). */
  readonly servicesChanged: readonly string[];
  /** Instances by service and host. A "move" is one removed + one added. */
  readonly instancesAdded: readonly { readonly service: string; readonly host: string }[];
  readonly instancesRemoved: readonly { readonly service: string; readonly host: string }[];
  readonly hostsAdded: readonly string[];
  readonly hostsRemoved: readonly string[];
  /** Hosts present before and after whose entry changed (addresses, overlays, groups, services). */
  readonly hostsChanged: readonly string[];
  readonly credentialsAdded: readonly string[];
  readonly credentialsRemoved: readonly string[];
  readonly credentialsChanged: readonly string[];
  readonly overlaysChanged: boolean;
  readonly domainChanged: boolean;
  /** pki_policy (leaf and CRL lifetimes, CRL refresh) changed. */
  readonly pkiPolicyChanged: boolean;
}

interface Keyed {
  readonly added: string[];
  readonly removed: string[];
  readonly changed: string[];
}

/** Added/removed/changed keys of two name-keyed maps; "changed" compares the entries' JSON. */
function diffMaps(previous: Readonly<Record<string, unknown>>, current: Readonly<Record<string, unknown>>): Keyed {
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  for (const name of Object.keys(current)) {
    if (!Object.hasOwn(previous, name)) added.push(name);
    else if (JSON.stringify(previous[name]) !== JSON.stringify(current[name])) changed.push(name);
  }
  for (const name of Object.keys(previous)) if (!Object.hasOwn(current, name)) removed.push(name);
  return { added: added.sort(), removed: removed.sort(), changed: changed.sort() };
}

function instanceKeys(topology: Topology): Map<string, { service: string; host: string }> {
  const keys = new Map<string, { service: string; host: string }>();
  for (const [service, entry] of Object.entries(topology.services)) {
    for (const instance of entry.instances) keys.set(`${service}\0${instance.host}`, { service, host: instance.host });
  }
  return keys;
}

function byServiceThenHost(a: { service: string; host: string }, b: { service: string; host: string }): number {
  return a.service === b.service ? (a.host < b.host ? -1 : a.host > b.host ? 1 : 0) : a.service < b.service ? -1 : 1;
}

/** What differs between two Topologies, every list sorted. */
export function diffTopologies(previous: Topology, current: Topology): TopologyDiff {
  const services = diffMaps(previous.services, current.services);
  const hosts = diffMaps(previous.hosts, current.hosts);
  const credentials = diffMaps(previous.credentials, current.credentials);
  const before = instanceKeys(previous);
  const after = instanceKeys(current);
  return {
    servicesAdded: services.added,
    servicesRemoved: services.removed,
    servicesChanged: services.changed,
    instancesAdded: [...after].filter(([key]) => !before.has(key)).map(([, value]) => value).sort(byServiceThenHost),
    instancesRemoved: [...before].filter(([key]) => !after.has(key)).map(([, value]) => value).sort(byServiceThenHost),
    hostsAdded: hosts.added,
    hostsRemoved: hosts.removed,
    hostsChanged: hosts.changed,
    credentialsAdded: credentials.added,
    credentialsRemoved: credentials.removed,
    credentialsChanged: credentials.changed,
    overlaysChanged: JSON.stringify(previous.overlays) !== JSON.stringify(current.overlays),
    domainChanged: previous.domain !== current.domain,
    pkiPolicyChanged: JSON.stringify(previous.pki ?? null) !== JSON.stringify(current.pki ?? null),
  };
}

export function isEmptyDiff(diff: TopologyDiff): boolean {
  return Object.values(diff).every((value) => (Array.isArray(value) ? value.length === 0 : value === false));
}

/** A short summary for logs: only the non-empty parts. */
function summarize(diff: TopologyDiff): Record<string, unknown> {
  const summary: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(diff)) {
    if (Array.isArray(value)) {
      if (value.length > 0) summary[key] = value.map((v: unknown) => (typeof v === 'string' ? v : `${(v as { service: string }).service}@${(v as { host: string }).host}`));
    } else if (value === true) summary[key] = true;
  }
  return summary;
}

export interface TopologyChange {
  readonly previous: Topology;
  readonly current: Topology;
  readonly diff: TopologyDiff;
  /** What triggered it: 'file changed', 'SIGHUP', ... */
  readonly reason: string;
}

export type ReloadOutcome = 'success' | 'failure' | 'unchanged';

interface LiveTopologyOptions {
  /** Watch the source's files (default true); SIGHUP/reload() works either way. */
  readonly watch?: boolean;
  /** How long file events must settle before a reload (default 200 ms). */
  readonly debounceMs?: number;
  readonly logger: Logger; // pino
}

/** How long file events must settle before a reload: editors and renames fire several. */
const DEFAULT_DEBOUNCE_MS = 200;

type Listener = (change: TopologyChange) => void | Promise<void>;
type ErrorListener = (error: Error, reason: string) => void;
type OutcomeListener = (outcome: ReloadOutcome, reason: string) => void;

interface Queued {
  readonly reasons: string[];
  readonly promise: Promise<ReloadOutcome>;
  readonly resolve: (outcome: Promise<ReloadOutcome>) => void;
}

export class LiveTopology {
  readonly description: string;
  private readonly source: TopologySource;
  private readonly options: LiveTopologyOptions;
  private topology: Topology | null = null;
  private text = '';
  private closed = false;
  private listeners: Listener[] = [];
  private errorListeners: ErrorListener[] = [];
  private outcomeListeners: OutcomeListener[] = [];
  /** By directory. */
  private readonly watchers = new Map<string, FSWatcher>();
  private watchedFiles = new Set<string>();
  private wildcardDirectories = new Set<string>();
  private debounce: NodeJS.Timeout | null = null;
  private busy = false;
  private queued: Queued | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(source: TopologySource, options: LiveTopologyOptions) {
    this.source = source;
    this.options = options;
    this.description = source.description;
  }

  /** The last good Topology (throws before start()). */
  get current(): Topology {
    if (this.topology === null) throw new Error(`LiveTopology(${this.description}): current read before start()`);
    return this.topology;
  }

  /** Whether start() has loaded a Topology (addition: lets a daemon start a shared one only once). */
  get started(): boolean {
    return this.topology !== null;
  }

  /** Loads the source once (a MeshplaneError here is fatal to the caller's start), then watches. */
  start(): Topology {
    if (this.topology !== null) return this.topology;
    const topology = this.source.load();
    this.topology = topology;
    this.text = serializeTopology(topology);
    if (Object.keys(topology.services).length === 0 && topology.allow_no_services !== true) {
      // Nothing better to run at a start (refusing would take everything down); say it loudly.
      this.options.logger.warn({ code: 'TOPOLOGY_ERR_NO_SERVICES', source: this.description }, 'the topology has no service: every service name answers NXDOMAIN and nothing is routed');
    }
    this.syncWatchers();
    return topology;
  }

  /**
   * Loads again; on success with a change, awaits every subscriber in order, then resolves 'success'.
   * A load that fails (bad edit, unreadable file, emptied services without allow_no_services)
   * keeps `current`, logs one error line naming the code and source, tells error listeners, and resolves 'failure'.
   * Reloads never overlap: one asked for while another runs is queued (coalesced).
   */
  reload(reason: string): Promise<ReloadOutcome> {
    if (this.topology === null) return Promise.reject(new Error(`LiveTopology(${this.description}): reload() before start()`));
    if (!this.busy) return this.run(reason);
    if (this.queued !== null) {
      // Coalesced: the queued load reads the files as they are then, which covers this request too.
      if (!this.queued.reasons.includes(reason)) this.queued.reasons.push(reason);
      return this.queued.promise;
    }
    let resolve!: (outcome: Promise<ReloadOutcome>) => void;
    const promise = new Promise<ReloadOutcome>((r) => (resolve = r));
    this.queued = { reasons: [reason], promise, resolve };
    return promise;
  }

  /**
   * Called after every accepted change, in subscription order; a listener that throws is logged and does not stop the others. Returns an unsubscribe function.
   * A listener must not await reload(): that reload is queued behind the one calling it.
   */
  subscribe(listener: Listener): () => void {
    this.listeners = [...this.listeners, listener];
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  /** Called when a reload fails (the old Topology stays). */
  onError(listener: ErrorListener): () => void {
    this.errorListeners = [...this.errorListeners, listener];
    return () => {
      this.errorListeners = this.errorListeners.filter((l) => l !== listener);
    };
  }

  /** Addition: called after every reload with its outcome (for metrics that count 'unchanged' too). */
  onOutcome(listener: OutcomeListener): () => void {
    this.outcomeListeners = [...this.outcomeListeners, listener];
    return () => {
      this.outcomeListeners = this.outcomeListeners.filter((l) => l !== listener);
    };
  }

  /** Settles when no reload is running or queued (for tests and for `up` to print after a change). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    this.closed = true;
    if (this.debounce !== null) clearTimeout(this.debounce);
    this.debounce = null;
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
    this.settleIdle();
  }

  private isIdle(): boolean {
    return !this.busy && this.queued === null && this.debounce === null;
  }

  private settleIdle(): void {
    if (!this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private run(reason: string): Promise<ReloadOutcome> {
    this.busy = true;
    return this.reloadOnce(reason).finally(() => {
      this.busy = false;
      const next = this.queued;
      this.queued = null;
      if (next !== null) next.resolve(this.run(next.reasons.join(', ')));
      else this.settleIdle();
    });
  }

  private async reloadOnce(reason: string): Promise<ReloadOutcome> {
    const log = this.options.logger;
    const previous = this.current;
    if (this.closed) return 'unchanged';
    let topology: Topology;
    let text: string;
    try {
      try {
        topology = this.source.load();
      } finally {
        // The inputs may name other files now (an include added, or a broken one to be fixed).
        if (!this.closed) this.syncWatchers();
      }
      text = serializeTopology(topology);
      if (text !== this.text) this.checkServices(previous, topology);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      log.error({ err: error, reason, source: this.description, code: (error as { code?: string }).code }, 'reload failed; still serving the previous topology');
      for (const listener of this.errorListeners) {
        try {
          listener(error, reason);
        } catch (listenerError) {
          log.error({ err: listenerError, reason }, 'a topology error listener failed');
        }
      }
      this.tellOutcome('failure', reason);
      return 'failure';
    }
    if (text === this.text) {
      log.info({ reason, source: this.description }, 'topology unchanged; nothing to reload');
      this.tellOutcome('unchanged', reason);
      return 'unchanged';
    }
    this.topology = topology;
    this.text = text;
    const change: TopologyChange = { previous, current: topology, diff: diffTopologies(previous, topology), reason };
    log.info({ reason, source: this.description, diff: summarize(change.diff) }, 'topology changed');
    for (const listener of this.listeners) {
      try {
        await listener(change);
      } catch (err) {
        log.error({ err, reason, source: this.description }, 'a topology subscriber failed on a change; the others still get it');
      }
    }
    this.tellOutcome('success', reason);
    return 'success';
  }

  /** A reload into no services, from some, is almost always an emptied or truncated input: refuse it unless intended. */
  private checkServices(previous: Topology, topology: Topology): void {
    const before = Object.keys(previous.services).length;
    if (Object.keys(topology.services).length > 0 || before === 0 || topology.allow_no_services === true) return;
    throw new MeshplaneError(
      'TOPOLOGY_ERR_NO_SERVICES',
      `the new topology from ${this.description} has no service (the one served has ${before}): every service name would answer NXDOMAIN and nothing would be routed. ` +
        'An emptied or truncated input is the usual cause; if an empty mesh is intended, set "allow_no_services: true" in services.yml and compile again',
    );
  }

  private tellOutcome(outcome: ReloadOutcome, reason: string): void {
    for (const listener of this.outcomeListeners) {
      try {
        listener(outcome, reason);
      } catch (err) {
        this.options.logger.error({ err, reason }, 'a topology outcome listener failed');
      }
    }
  }

  /**
   * Watches the directories of every input file (and of wildcard includes),
   * as of the last load: called after the start and after every reload, so
   * a newly included file is watched from then on. Directories, not files:
   * an atomic write replaces the file (a new inode) by a rename.
   */
  private syncWatchers(): void {
    if (!(this.options.watch ?? true) || this.closed) return;
    const list = this.source.watchList();
    this.watchedFiles = new Set(list.files);
    this.wildcardDirectories = new Set(list.directories);
    const wanted = new Set(watchedDirectories(list));
    for (const [directory, watcher] of this.watchers) {
      if (wanted.has(directory)) continue;
      watcher.close();
      this.watchers.delete(directory);
    }
    for (const directory of wanted) {
      if (this.watchers.has(directory)) continue;
      let watcher: FSWatcher;
      try {
        watcher = watch(directory, (_event, filename) => {
          const relevant = filename === null || this.wildcardDirectories.has(directory) || this.watchedFiles.has(join(directory, filename.toString()));
          if (relevant) this.scheduleReload();
        });
      } catch (err) {
        this.options.logger.warn({ err, directory, source: this.description }, 'cannot watch for topology changes; SIGHUP still reloads');
        continue;
      }
      watcher.on('error', (err) => this.options.logger.warn({ err, directory, source: this.description }, 'cannot watch for topology changes; SIGHUP still reloads'));
      this.watchers.set(directory, watcher);
    }
  }

  private scheduleReload(): void {
    if (this.closed) return;
    if (this.debounce !== null) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.reload('file changed');
    }, this.options.debounceMs ?? DEFAULT_DEBOUNCE_MS);
  }
}

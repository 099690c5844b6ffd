/**
 * Helpers for the playbook tests: run real ansible-playbook against test
 * hosts that are directories on this machine (meshplane_root), read its JSON
 * report, and snapshot the files a run leaves on each host.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CLI, REPO_ROOT } from '../support/run.js';

export const ANSIBLE_DIR = join(REPO_ROOT, 'ansible');
const TEST_ANSIBLE_DIR = join(REPO_ROOT, 'test/ansible');

export interface HostResult {
  readonly changed?: boolean;
  readonly skipped?: boolean;
  readonly failed?: boolean;
  readonly msg?: string;
  readonly diff?: unknown;
  readonly results?: readonly HostResult[];
}

export interface PlaybookReport {
  readonly status: number;
  readonly stderr: string;
  readonly stats: Record<string, { changed: number; failures: number; ok: number; unreachable: number }>;
  /** Task (and handler) name -> host -> result. */
  readonly tasks: { name: string; hosts: Record<string, HostResult> }[];
  readonly raw: string;
}

export interface Controller {
  readonly dir: string;
  readonly services: string;
  readonly inventory: string;
  readonly varsFile: string;
}

/**
 * A ceiling for one ansible-playbook run over the five test hosts: about a minute on a quiet
 * machine; beside two CPU hogs and other test runs one took 8 to over 10 min (Ansible
 * forks a Python per task and host).
 */
export const PLAYBOOK_DEADLINE_MS = 900_000;

/** ansible-playbook with the JSON callback, the two inventories (static + meshplane script) and the test vars. */
export function playbook(controller: Controller, extra: readonly string[] = [], command = 'ansible-playbook', play = join(ANSIBLE_DIR, 'site.yml')): Promise<PlaybookReport> {
  const args = ['-i', controller.inventory, '-i', join(ANSIBLE_DIR, 'inventory/meshplane'), play, '-e', `@${controller.varsFile}`, ...extra];
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      {
        cwd: controller.dir,
        encoding: 'utf8',
        timeout: PLAYBOOK_DEADLINE_MS,
        maxBuffer: 256 * 1024 * 1024,
        env: {
          ...process.env,
          ...ansibleEnv(controller.dir),
          // Our own JSON callback (test/ansible/callback_plugins): ansible-core has none.
          ANSIBLE_CALLBACK_PLUGINS: join(TEST_ANSIBLE_DIR, 'callback_plugins'),
          ANSIBLE_STDOUT_CALLBACK: 'meshplane_json',
          MESHPLANE_BIN: `${process.execPath} ${CLI}`,
          MESHPLANE_SERVICES: controller.services,
          MESHPLANE_INVENTORY: controller.inventory,
        },
      },
      (error, stdout, stderr) => {
        const status = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        let parsed: { stats?: PlaybookReport['stats']; plays?: { tasks: { task: { name: string }; hosts: Record<string, HostResult> }[] }[] } = {};
        try {
          parsed = JSON.parse(stdout) as typeof parsed;
        } catch {
          // left empty: the assertions print stdout and stderr
        }
        const tasks = (parsed.plays ?? []).flatMap((play) => play.tasks.map((t) => ({ name: t.task.name, hosts: t.hosts })));
        resolve({ status, stderr, stats: parsed.stats ?? {}, tasks, raw: stdout });
      },
    );
  });
}

/** Keeps Ansible's own state and config away from the user's. */
export function ansibleEnv(dir: string): Record<string, string> {
  return {
    ANSIBLE_CONFIG: join(ANSIBLE_DIR, 'ansible.cfg'),
    ANSIBLE_HOME: join(dir, '.ansible'),
    ANSIBLE_LOCAL_TEMP: join(dir, '.ansible/tmp'),
    ANSIBLE_REMOTE_TEMP: join(dir, '.ansible/remote-tmp'),
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_FORCE_COLOR: '0',
    ANSIBLE_LOCALHOST_WARNING: 'False',
    ANSIBLE_INVENTORY_UNPARSED_WARNING: 'False',
  };
}

/** Hosts on which the task (by name) reported a change, in any of its loop items. */
export function changedOn(report: PlaybookReport, taskName: string): string[] {
  const hosts = new Set<string>();
  for (const task of report.tasks) {
    // The JSON callback names role tasks "<role> : <task name>".
    if (task.name !== taskName && !task.name.endsWith(` : ${taskName}`)) continue;
    for (const [host, result] of Object.entries(task.hosts)) if (result.changed === true) hosts.add(host);
  }
  return [...hosts].sort();
}

/** Hosts on which the task (or handler) ran, for at least one loop item, instead of being skipped by its condition. */
export function ranOn(report: PlaybookReport, taskName: string): string[] {
  const hosts = new Set<string>();
  for (const task of report.tasks) {
    if (task.name !== taskName && !task.name.endsWith(` : ${taskName}`)) continue;
    for (const [host, result] of Object.entries(task.hosts)) {
      const items = result.results;
      const ran = items === undefined ? result.skipped !== true : items.some((i) => i.skipped !== true);
      if (ran) hosts.add(host);
    }
  }
  return [...hosts].sort();
}

/** Hosts with changed > 0 in the play recap. */
export function changedHosts(report: PlaybookReport): string[] {
  return Object.entries(report.stats)
    .filter(([, s]) => s.changed > 0)
    .map(([host]) => host)
    .sort();
}

export function describeFailure(report: PlaybookReport): string {
  const failed = report.tasks.flatMap((t) =>
    Object.entries(t.hosts)
      .filter(([, r]) => r.failed === true || (r.results ?? []).some((i) => i.failed === true))
      .map(([host, r]) => `${t.name} on ${host}: ${JSON.stringify(r).slice(0, 2000)}`),
  );
  return `exit ${report.status}\n${failed.join('\n')}\n${report.stderr.slice(-3000)}\n${failed.length === 0 ? report.raw.slice(-3000) : ''}`;
}

export interface FileState {
  readonly sha256: string;
  readonly mtimeMs: number;
  readonly mode: number;
}

/** Every file under a host root except the installed package, with its hash, mtime and mode. */
export function snapshot(root: string): Map<string, FileState> {
  const files = new Map<string, FileState>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const rel = relative(root, path);
      if (rel.startsWith('usr/local/lib/') || rel === 'run') continue;
      if (entry.isDirectory()) walk(path);
      else {
        const stat = lstatSync(path);
        const sha256 = entry.isSymbolicLink() ? 'symlink' : createHash('sha256').update(readFileSync(path)).digest('hex');
        files.set(rel, { sha256, mtimeMs: stat.mtimeMs, mode: stat.mode & 0o7777 });
      }
    }
  };
  if (existsSync(root)) walk(root);
  return files;
}

/** Paths added, removed, rewritten (content) or touched (mtime) between two snapshots. */
export function touched(before: Map<string, FileState>, after: Map<string, FileState>): string[] {
  const paths = new Set([...before.keys(), ...after.keys()]);
  const out: string[] = [];
  for (const path of paths) {
    const a = before.get(path);
    const b = after.get(path);
    if (a === undefined || b === undefined || a.sha256 !== b.sha256 || a.mtimeMs !== b.mtimeMs || a.mode !== b.mode) out.push(path);
  }
  return out.sort();
}

/** The command line of a unit's ExecStart= (our units quote nothing). */
export function execStart(unitFile: string): string[] {
  const line = readFileSync(unitFile, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('ExecStart='));
  if (line === undefined) throw new Error(`${unitFile} has no ExecStart=`);
  return line.slice('ExecStart='.length).trim().split(/\s+/);
}

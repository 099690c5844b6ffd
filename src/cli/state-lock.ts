/**
 * `meshplane up`'s lock on its state directory: `<state-dir>/lock`, created
 * with O_EXCL and holding the owner's PID and start time as JSON. A second
 * `up` on the same directory finds it and stops (CLI_ERR_STATE_LOCKED)
 * before it writes anything. A lock whose process is gone (kill -9, a
 * crash, a reboot) is stale and taken over, and the caller says so. The
 * lock is removed when the owner exits, whatever the way (return, signal,
 * uncaught error); after kill -9 the next `up` takes it over.
 */
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { MeshplaneError } from '../errors.js';
import { describeFsError, makeDirs, processAlive } from '../lib/atomic-write.js';

interface LockOwner {
  readonly pid: number;
  /** ISO time the owner took the lock. */
  readonly started: string;
  /** The owner's start time in clock ticks since boot (Linux), to tell a reused PID apart. */
  readonly procStart?: string;
}

interface StateLock {
  readonly path: string;
  /** The stale lock that was taken over, if there was one. */
  readonly tookOver: LockOwner | undefined;
  release(): void;
}

/** Field 22 of /proc/<pid>/stat: when the process started (undefined off Linux or when it is gone). */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function readOwner(path: string): LockOwner | undefined {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>;
    if (typeof value.pid !== 'number' || typeof value.started !== 'string') return undefined;
    return { pid: value.pid, started: value.started, procStart: typeof value.procStart === 'string' ? value.procStart : undefined };
  } catch {
    return undefined;
  }
}

/** Whether the lock's owner still runs: its PID is alive and (where known) started when the lock says. */
function ownerAlive(owner: LockOwner): boolean {
  if (!processAlive(owner.pid)) return false;
  const now = processStart(owner.pid);
  return owner.procStart === undefined || now === undefined || now === owner.procStart;
}

/**
 * Takes the lock on `stateDir` (creating the directory, and nothing else,
 * when missing), or throws CLI_ERR_STATE_LOCKED naming the process that
 * holds it.
 */
export function lockStateDir(stateDir: string): StateLock {
  makeDirs(stateDir);
  const path = join(stateDir, 'lock');
  const me: LockOwner = { pid: process.pid, started: new Date().toISOString(), procStart: processStart(process.pid) };
  let tookOver: LockOwner | undefined;
  // Two rounds: the second one after removing a stale lock.
  for (let round = 0; ; round++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new MeshplaneError('CLI_ERR_CANNOT_WRITE', `cannot write ${path}: ${describeFsError(err)}`, { cause: err });
      const owner = readOwner(path);
      if (owner !== undefined && ownerAlive(owner)) {
        throw new MeshplaneError(
          'CLI_ERR_STATE_LOCKED',
          `state directory ${stateDir} is in use by another meshplane up (pid ${owner.pid}, started ${owner.started}; lock ${path}); stop it first, or give this one another --state-dir`,
        );
      }
      if (owner === undefined && Date.now() - mtimeOf(path) < 10_000) {
        // Being written by an owner that has just created it: not stale, just young.
        throw new MeshplaneError('CLI_ERR_STATE_LOCKED', `state directory ${stateDir} is being locked by another meshplane up just now (lock ${path}); stop it first, or give this one another --state-dir`);
      }
      if (round > 0) throw new MeshplaneError('CLI_ERR_STATE_LOCKED', `cannot take the stale lock ${path}: another process took it meanwhile`);
      tookOver = owner ?? { pid: 0, started: 'unknown' };
      rmSync(path, { force: true });
      continue;
    }
    try {
      writeSync(fd, `${JSON.stringify(me)}\n`);
    } finally {
      closeSync(fd);
    }
    break;
  }
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    process.removeListener('exit', release);
    // Only our own lock: never one that another process took over meanwhile.
    if (readOwner(path)?.pid === process.pid) rmSync(path, { force: true });
  };
  process.once('exit', release);
  return { path, tookOver, release };
}

function mtimeOf(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

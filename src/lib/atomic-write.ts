/**
 * The one way meshplane writes a file: a temporary file in the same
 * directory (created 0600, so a private key is never readable by others even
 * for a moment), given its exact mode (and owner), fsynced, renamed over the
 * target, then the directory fsynced. A crash or a full disk leaves either
 * the old file or the new one, never half of one; a failed write removes its
 * temporary file.
 *
 * Every failure is a MeshplaneError (`CLI_ERR_CANNOT_WRITE` unless the caller
 * names its own code) whose message is `cannot write FILE: reason`, the
 * reason in words ("services.yml is not a directory", "permission denied").
 *
 * Missing parent directories are created by `makeDirs`, not by
 * `mkdirSync(…, { recursive: true })`: Node 20's recursive mkdir loops
 * forever when mkdir says ENOENT for a path whose parent exists (a
 * directory under /proc: `mkdir /proc/nope` is ENOENT, `mkdir /proc` is
 * EEXIST, retry), spinning at 100% CPU. `makeDirs` walks up once and
 * creates each missing directory once, so it always ends.
 */
import { closeSync, fchmodSync, fchownSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { MeshplaneError } from '../errors.js';

const WRITE_ERROR_CODE = 'CLI_ERR_CANNOT_WRITE';

interface FileOwner {
  readonly uid: number;
  readonly gid: number;
}

interface AtomicWriteOptions {
  /** The file's mode, applied exactly (the umask does not narrow it). Default 0644. */
  readonly mode?: number;
  /** chown the file (before it is renamed into place). */
  readonly owner?: FileOwner;
  /** false skips the fsyncs (still atomic by rename), for outputs that can be made again. Default true. */
  readonly durable?: boolean;
  /** The error code of a failure (default CLI_ERR_CANNOT_WRITE). */
  readonly errorCode?: string;
  /** Mode of parent directories that have to be created (default 0755, less the umask). */
  readonly dirMode?: number;
}

/** A failed step, with the reason in words; turned into `cannot write FILE: reason`. */
class WriteFailure extends Error {}

/** `EACCES: permission denied, open '/x'` -> `permission denied (EACCES)`. */
export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code !== 'string') return String((err as Error)?.message ?? err);
  const words = /^[A-Z0-9_]+: ([^,]+)/.exec(e.message)?.[1] ?? e.message;
  return `${words} (${e.code})`;
}

function codeOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code;
}

/**
 * Creates `dir` and any missing parents (like `mkdir -p`), in a bounded
 * number of steps. Throws a WriteFailure naming the path that failed.
 */
function makeDirsOrFail(dir: string, mode: number): void {
  const missing: string[] = [];
  let current = resolve(dir);
  for (;;) {
    let isDir: boolean;
    try {
      isDir = statSync(current).isDirectory();
    } catch (err) {
      const code = codeOf(err);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new WriteFailure(`cannot look at ${current}: ${describeFsError(err)}`);
      missing.push(current);
      const parent = dirname(current);
      if (parent === current) throw new WriteFailure(`${current} does not exist`);
      current = parent;
      continue;
    }
    if (!isDir) throw new WriteFailure(`${current} is not a directory`);
    break;
  }
  for (const path of missing.reverse()) {
    try {
      mkdirSync(path, { mode });
    } catch (err) {
      if (codeOf(err) === 'EEXIST' && isDirectory(path)) continue; // made meanwhile by someone else
      throw new WriteFailure(`cannot create directory ${path}: ${describeFsError(err)}`);
    }
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** `mkdir -p` that always ends; failures are `cannot write DIR: reason`, with `errorCode`. */
export function makeDirs(dir: string, options: { mode?: number; errorCode?: string } = {}): void {
  try {
    makeDirsOrFail(dir, options.mode ?? 0o755);
  } catch (err) {
    if (err instanceof WriteFailure) throw new MeshplaneError(options.errorCode ?? WRITE_ERROR_CODE, `cannot write ${dir}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** The temporary file's name: `.<file>.<pid>.<ms>.<random>.tmp` (see STALE_TEMP_NAME). */
function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 8)}.tmp`);
}

/** Writes `data` to `path` atomically (see the module comment). `options` may be just the mode. */
export function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions | number = {}): void {
  const opts: AtomicWriteOptions = typeof options === 'number' ? { mode: options } : options;
  const durable = opts.durable !== false;
  const dir = dirname(path);
  let temp: string | undefined;
  try {
    makeDirsOrFail(dir, opts.dirMode ?? 0o755);
    const name = tempName(path);
    let fd: number;
    try {
      // 0600 from the first byte: the final mode (maybe wider) is set only once the content is complete.
      fd = openSync(name, 'wx', 0o600);
    } catch (err) {
      throw new WriteFailure(`cannot create a temporary file in ${dir}: ${describeFsError(err)}`);
    }
    temp = name;
    try {
      const buffer = typeof data === 'string' ? Buffer.from(data) : data;
      let offset = 0;
      while (offset < buffer.length) offset += writeSync(fd, buffer, offset);
      // fchmod after open: the umask must not change the mode we promise.
      fchmodSync(fd, opts.mode ?? 0o644);
      if (opts.owner !== undefined) fchownSync(fd, opts.owner.uid, opts.owner.gid);
      if (durable) fsyncSync(fd);
    } catch (err) {
      throw new WriteFailure(describeFsError(err));
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(name, path);
    } catch (err) {
      throw new WriteFailure(codeOf(err) === 'EISDIR' || isDirectory(path) ? `${path} is a directory` : describeFsError(err));
    }
    temp = undefined;
    if (durable) {
      try {
        fsyncDir(dir);
      } catch (err) {
        throw new WriteFailure(`written, but the directory could not be synced: ${describeFsError(err)}`);
      }
    }
  } catch (err) {
    if (temp !== undefined) rmSync(temp, { force: true });
    if (err instanceof WriteFailure) throw new MeshplaneError(opts.errorCode ?? WRITE_ERROR_CODE, `cannot write ${path}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Puts a directory's entries (a rename, an unlink) on disk. */
export function fsyncDir(dir: string): void {
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** Names of the temporary files writeFileAtomic makes: `.<file>.<pid>.<ms>.<random>.tmp`. */
const STALE_TEMP_NAME = /^\..+\.(\d+)\.(\d+)\.[a-z0-9]+\.tmp$/;
/** A temporary file older than this is stale even if its PID is alive (the PID was reused). */
const STALE_TEMP_AGE_MS = 10 * 60_000;

export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return codeOf(err) === 'EPERM';
  }
}

interface RemovedTemp {
  readonly path: string;
  readonly pid: number;
}

/**
 * Removes, in `dir`, the temporary files a writer left when it was killed
 * before its rename (kill -9, power loss): names of writeFileAtomic's form
 * whose process is gone, or older than STALE_TEMP_AGE_MS. A writer still at
 * work keeps its file. A missing or unreadable directory has nothing to remove.
 * With `file`, only the temporary files of that file name (in a directory
 * that holds other programs' files too).
 */
export function removeStaleTemps(dir: string, options: { file?: string; now?: number } = {}): RemovedTemp[] {
  const now = options.now ?? Date.now();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: RemovedTemp[] = [];
  for (const name of names) {
    if (options.file !== undefined && !name.startsWith(`.${options.file}.`)) continue;
    const match = STALE_TEMP_NAME.exec(name);
    if (match === null) continue;
    const pid = Number(match[1]);
    const age = now - Number(match[2]);
    if (processAlive(pid) && age < STALE_TEMP_AGE_MS) continue;
    const path = join(dir, name);
    try {
      rmSync(path, { force: true });
      removed.push({ path, pid });
    } catch {
      // Not ours to fix here; the write that needs the directory reports it.
    }
  }
  return removed;
}

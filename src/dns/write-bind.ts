/**
 * Writing a BIND render so named never reads half of one: the files go into
 * a new directory beside DIR (`.DIR.<hash>`), each fsynced (several at once),
 * then the directories; optionally checked there with `named-checkconf -z`;
 * and DIR, a symlink, is then swapped to it in one rename. Same content, same hash: nothing is written, so Ansible sees no
 * change. The SOA serial is the previous render's while the content stays
 * the same, else the time in seconds (at least the previous one + 1), so it
 * only grows, like our server's load-time serial.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { MeshplaneError } from '../errors.js';
import { describeFsError, fsyncDir, makeDirs } from '../lib/atomic-write.js';
import type { BindFile } from './render-bind.js';
import { BIND_CONF_FILE, renderedSerial, reserialBind } from './render-bind.js';

interface BindWriteOptions {
  /** Run `named-checkconf -z` on the new render before it replaces the old one. */
  readonly check: boolean;
  /** A fixed SOA serial; default: kept while the content is unchanged, else the time. */
  readonly serial?: number;
}

interface BindWriteReport {
  readonly changed: boolean;
  readonly serial: number;
  /** The directory DIR points to now. */
  readonly target: string;
  readonly files: number;
}

/** `render(serial)` gives the files; `out` is DIR (a symlink this function manages). */
export async function writeBindRender(out: string, render: (serial: number) => BindFile[], options: BindWriteOptions): Promise<BindWriteReport> {
  const link = resolve(out);
  const parent = dirname(link);
  const prefix = `.${basename(link)}.`;
  const previous = currentRender(link);

  let serial = options.serial ?? previous?.serial ?? nowSerial();
  // Encoded once: the bytes are both hashed and written.
  let files = encode(render(serial));
  let hash = hashOf(files);
  if (options.serial === undefined && previous !== null && hash !== previous.hash) {
    serial = Math.max(nowSerial(), (previous.serial ?? 0) + 1);
    files = encode(reserialBind(files, serial));
    hash = hashOf(files);
  }
  const target = join(parent, `${prefix}${hash}`);
  if (previous !== null && previous.target === target) return { changed: false, serial, target, files: files.length };

  makeDirs(parent, { errorCode: 'DNS_ERR_RENDER_OUT' });
  rmSync(target, { recursive: true, force: true }); // a half-written leftover of a killed run
  try {
    await writeAll(target, files);
    if (options.check) check(target);
    // The swap: a new symlink renamed over DIR (atomic), then the directory entry made durable.
    const temp = join(parent, `${prefix}link.${process.pid}.tmp`);
    rmSync(temp, { force: true });
    symlinkSync(basename(target), temp);
    renameSync(temp, link);
    fsyncDir(parent);
  } catch (err) {
    rmSync(target, { recursive: true, force: true });
    if (err instanceof MeshplaneError) throw err;
    throw new MeshplaneError('DNS_ERR_RENDER_OUT', `cannot write ${link}: ${describeFsError(err)}`, { cause: err });
  }
  // Older renders are no longer pointed at.
  for (const name of readdirSync(parent)) {
    if (name.startsWith(prefix) && /^[0-9a-f]{16}$/.test(name.slice(prefix.length)) && join(parent, name) !== target) rmSync(join(parent, name), { recursive: true, force: true });
  }
  return { changed: true, serial, target, files: files.length };
}

function nowSerial(): number {
  return Math.floor(Date.now() / 1000);
}

interface EncodedFile extends BindFile {
  readonly bytes: Buffer;
}

function encode(files: readonly BindFile[]): EncodedFile[] {
  return files.map((file) => ({ ...file, bytes: Buffer.from(file.content) }));
}

function hashOf(files: readonly EncodedFile[]): string {
  const hash = createHash('sha256');
  for (const file of files) hash.update(file.path).update('\0').update(file.bytes).update('\0');
  return hash.digest('hex').slice(0, 16);
}

/** What DIR points to now: nothing yet, or a render of ours; anything else is refused. */
function currentRender(link: string): { target: string; hash: string; serial: number | null } | null {
  let stat;
  try {
    stat = lstatSync(link);
  } catch {
    return null;
  }
  if (!stat.isSymbolicLink()) {
    throw new MeshplaneError('DNS_ERR_RENDER_OUT', `${link} exists and is not a render's symlink: --out names a path the render owns (a symlink it swaps to each new render); remove it or choose another`);
  }
  const target = resolve(dirname(link), readlinkSync(link));
  let conf = '';
  try {
    conf = readFileSync(join(target, BIND_CONF_FILE), 'utf8');
  } catch {
    // A dangling link: rendered again from scratch.
  }
  return { target, hash: basename(target).slice(basename(link).length + 2), serial: renderedSerial(conf) };
}

/**
 * Files written and fsynced at most this many at a time. One after the other, each fsync
 * waits for its own journal commit (seconds for a render's hundreds of files on a busy
 * disk); in flight together they share commits. Node runs them on libuv's 4 threads.
 */
const WRITE_CONCURRENCY = 16;

/** Every file written and fsynced (several at once), then every directory. */
async function writeAll(root: string, files: readonly EncodedFile[]): Promise<void> {
  const dirs = new Set<string>([root]);
  mkdirSync(root, { mode: 0o755 });
  for (const file of files) {
    const dir = dirname(join(root, file.path));
    if (!dirs.has(dir)) {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      dirs.add(dir);
    }
  }
  let next = 0;
  let failed = false;
  const writer = async (): Promise<void> => {
    while (!failed && next < files.length) {
      const file = files[next++]!;
      const handle = await open(join(root, file.path), 'wx', 0o644);
      try {
        await handle.writeFile(file.bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  };
  // Every writer settled before a failure is reported: the caller removes the directory next.
  const results = await Promise.allSettled(
    Array.from({ length: Math.min(WRITE_CONCURRENCY, files.length) }, () =>
      writer().catch((err: unknown) => {
        failed = true;
        throw err;
      }),
    ),
  );
  const failure = results.find((result) => result.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
  for (const dir of dirs) fsyncDir(dir);
}

/** named-checkconf -z over the new render (every zone loaded as named would): its complaint on failure. */
function check(target: string): void {
  const scratch = join(tmpdir(), `meshplane-bind-check-${process.pid}-${Date.now()}.conf`);
  try {
    const fd = openSync(scratch, 'wx', 0o600);
    writeSync(fd, `options { directory "${target}"; };\ninclude "${join(target, BIND_CONF_FILE)}";\n`);
    closeSync(fd);
    execFileSync('named-checkconf', ['-z', scratch], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 * 1024 * 1024 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new MeshplaneError('DNS_ERR_BIND_CHECK', 'named-checkconf not found: install bind9-utils, or render without --check', { cause: err });
    // Its output lists every zone it loaded; only the complaints say why.
    const complaints = `${e.stdout ?? ''}${e.stderr ?? ''}`.split('\n').filter((line) => line.trim() !== '' && !/: loaded serial \d+$/.test(line));
    throw new MeshplaneError('DNS_ERR_BIND_CHECK', `named-checkconf rejected the new render (the previous one stays in place): ${complaints.slice(0, 20).join('; ')}`, { cause: err });
  } finally {
    rmSync(scratch, { force: true });
  }
}

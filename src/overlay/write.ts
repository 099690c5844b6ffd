/**
 * Writing rendered files under a root, idempotently: a file whose bytes and
 * mode are already right is not touched (so its mtime stays and a handler
 * watching it does not fire), others are written atomically. The list of
 * rendered files is kept in a manifest so that the next render removes what
 * is no longer rendered (a peer that left, an overlay the host left) and
 * nothing else: key files and files meshplane did not write stay.
 */
import { chmodSync, readFileSync, rmSync, statSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { writeFileAtomic } from '../lib/atomic-write.js';
import { paths } from './paths.js';

export interface RenderedFile {
  /** Path relative to the root, as on the host (`etc/tinc/vpn0/tinc.conf`). */
  readonly path: string;
  readonly content: string;
  readonly mode: number;
}

interface WriteReport {
  /** Root-relative paths, sorted. */
  readonly written: readonly string[];
  readonly unchanged: readonly string[];
  readonly removed: readonly string[];
}

export function writeRendered(root: string, files: readonly RenderedFile[]): WriteReport {
  const written: string[] = [];
  const unchanged: string[] = [];
  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    const target = join(root, file.path);
    const state = currentState(target);
    const bytes = Buffer.from(file.content);
    if (state !== undefined && state.mode === file.mode && state.bytes.equals(bytes)) {
      unchanged.push(file.path);
      continue;
    }
    if (state !== undefined && state.bytes.equals(bytes)) {
      chmodSync(target, file.mode);
    } else {
      writeFileAtomic(target, bytes, file.mode);
      // The umask may have taken bits away; the mode is part of the output.
      chmodSync(target, file.mode);
    }
    written.push(file.path);
  }

  const current = new Set(files.map((f) => f.path));
  const removed: string[] = [];
  for (const old of readManifest(root)) {
    if (current.has(old)) continue;
    rmSync(join(root, old), { force: true });
    removed.push(old);
  }
  const manifest = `${[...current].sort().join('\n')}\n`;
  const manifestPath = join(root, paths.manifest);
  if (currentState(manifestPath)?.bytes.equals(Buffer.from(manifest)) !== true) writeFileAtomic(manifestPath, manifest, 0o644);
  return { written, unchanged, removed: removed.sort() };
}

function currentState(path: string): { bytes: Buffer; mode: number } | undefined {
  try {
    const mode = statSync(path).mode & 0o7777;
    return { bytes: readFileSync(path), mode };
  } catch (err) {
    // ENOTDIR: a part of the path is a file (--out under a file); the write then says so.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** Paths of the previous render; entries that would leave the root are ignored. */
function readManifest(root: string): string[] {
  let text: string;
  try {
    text = readFileSync(join(root, paths.manifest), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line !== '' && !isAbsolute(line) && !normalize(line).startsWith('..'));
}

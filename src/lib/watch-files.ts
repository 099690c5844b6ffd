/**
 * Follows a set of files that are replaced by atomic renames (credential
 * files: certificate, key, CA, CRL). A rename replaces the inode, so the
 * directories are watched, not the files; events for other names in them
 * are ignored, and a burst (an install writes CA, CRL and certificate one
 * after the other) is debounced into one call.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

export interface FileWatch {
  close(): void;
}

/** Calls `changed` once per burst of changes to `files`; directories that do not exist are skipped. */
export function watchFiles(files: readonly string[], changed: () => void, debounceMs = 250): FileWatch {
  const names = new Map<string, Set<string>>();
  for (const file of files) {
    const dir = dirname(file);
    names.set(dir, (names.get(dir) ?? new Set()).add(basename(file)));
  }
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  const poke = (): void => {
    if (closed) return;
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      if (!closed) changed();
    }, debounceMs);
  };
  const watchers: FSWatcher[] = [];
  for (const [dir, wanted] of names) {
    try {
      const watcher = watch(dir, { persistent: false }, (_event, name) => {
        // No name (some platforms): assume it was ours.
        if (name === null || wanted.has(String(name))) poke();
      });
      watcher.on('error', () => undefined);
      watchers.push(watcher);
    } catch {
      // The directory is not there (yet): nothing to follow; SIGHUP still reloads.
    }
  }
  return {
    close: () => {
      closed = true;
      if (timer !== null) clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
    },
  };
}

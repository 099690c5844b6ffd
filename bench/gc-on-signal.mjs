// Preloaded into the gateway and agents by bench:gateway (node --expose-gc
// --import ...): on SIGUSR2 the process collects all garbage and writes its
// memory figures to $BENCH_MEMORY_DIR/<pid>.json, so that the bench reads
// memory held, not garbage that happens not to be collected yet.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';

const dir = process.env.BENCH_MEMORY_DIR;
if (dir && typeof globalThis.gc === 'function') {
  process.on('SIGUSR2', () => {
    // Twice: the first full GC can leave work (weak callbacks, finalizers) for the second.
    globalThis.gc();
    globalThis.gc();
    const file = join(dir, `${process.pid}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(process.memoryUsage()));
    renameSync(`${file}.tmp`, file);
  });
}

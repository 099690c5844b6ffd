// Adds lock entries for other platforms' optional native packages that the
// registry mirror of this workplace does not serve (it answers 404 for them,
// so `npm install` leaves them out of package-lock.json), which npm 11's
// `npm ci` then reports as "Missing from lock file". The entries carry the
// package's os/cpu/libc so npm skips them on every platform they are not for.
// Run after any `npm install` that rewrites the lock: `npm run lock:complete`.
import { readFileSync, writeFileSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const LOCK = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(LOCK, 'utf8'));
const packages = lock.packages;

/** os, cpu and libc from a native package's name, e.g. rollup-linux-x64-musl. */
function platformOf(name) {
  const parts = name.split('/').pop().split('-');
  const os = ['android', 'darwin', 'freebsd', 'linux', 'openbsd', 'openharmony', 'win32', 'netbsd', 'sunos', 'aix'].find((o) => parts.includes(o));
  const cpu = ['arm64', 'x64', 'ia32', 'arm', 'loong64', 'ppc64', 'riscv64', 's390x', 'mips64el'].find((c) => parts.includes(c));
  const libc = parts.includes('musl') || parts.includes('musleabihf') ? 'musl' : parts.includes('gnu') || parts.includes('gnueabihf') ? 'glibc' : undefined;
  return os === undefined || cpu === undefined ? undefined : { os, cpu, libc };
}

let added = 0;
for (const [path, meta] of Object.entries(packages)) {
  for (const [dep, version] of Object.entries(meta.optionalDependencies ?? {})) {
    const where = `node_modules/${dep}`;
    if (packages[where] !== undefined || packages[`${path}/${where}`] !== undefined) continue;
    const platform = platformOf(dep);
    if (platform === undefined) continue;
    packages[where] = {
      version,
      cpu: [platform.cpu],
      ...(platform.libc ? { libc: [platform.libc] } : {}),
      license: meta.license ?? 'MIT',
      optional: true,
      os: [platform.os],
    };
    added++;
  }
}
const sorted = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)));
lock.packages = sorted;
writeFileSync(LOCK, `${JSON.stringify(lock, null, 2)}\n`);
process.stdout.write(`complete-lockfile: added ${added} platform entr${added === 1 ? 'y' : 'ies'}\n`);

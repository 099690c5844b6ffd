// The external tools a bench calls, checked before it starts anything: one
// list of what is missing and the Debian packages that provide it, then
// exit 2 (a missing tool is not a failed benchmark).
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import process from 'node:process';

/** Debian package of each tool the benches call. */
const DEBIAN_PACKAGES = {
  'ansible-inventory': 'ansible-core',
  cc: 'gcc',
  '/usr/include/openssl/ssl.h': 'libssl-dev',
  dig: 'bind9-dnsutils',
  dnsmasq: 'dnsmasq-base',
  dnsperf: 'dnsperf',
  haproxy: 'haproxy',
  iperf3: 'iperf3',
  knotd: 'knot',
  named: 'bind9',
  nproc: 'coreutils',
  nsd: 'nsd',
  openssl: 'openssl',
  ssh: 'openssh-client',
  'ssh-keygen': 'openssh-client',
  '/usr/sbin/sshd': 'openssh-server',
  wrk: 'wrk',
};

function accessible(path, mode) {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}

/** Is `tool` (a name looked up on PATH, or an absolute path) there to run? */
function found(tool, path = process.env.PATH ?? '') {
  // An absolute path is a program, or a C header (`.h`) that a bench compiles against.
  if (isAbsolute(tool)) return accessible(tool, tool.endsWith('.h') ? constants.R_OK : constants.X_OK);
  return path.split(delimiter).some((dir) => dir !== '' && accessible(join(dir, tool), constants.X_OK));
}

/** The tools of `tools` that are not there, with their Debian packages. */
export function missingTools(tools) {
  return [...new Set(tools)].filter((tool) => !found(tool)).map((tool) => ({ tool, package: DEBIAN_PACKAGES[tool] ?? tool }));
}

/**
 * Exits 2 with one message listing every missing tool and the apt-get line
 * that installs them, unless all of `tools` are there. Call it before
 * starting anything (no process, no temporary directory yet).
 */
export function requireTools(bench, tools) {
  const missing = missingTools(tools);
  if (missing.length === 0) return;
  const width = Math.max(...missing.map((m) => m.tool.length));
  process.stderr.write(
    `${bench}: missing tools, nothing was started:\n` +
      missing.map((m) => `  ${m.tool.padEnd(width)}  (Debian package ${m.package})\n`).join('') +
      `Install them with:\n  apt-get install -y ${[...new Set(missing.map((m) => m.package))].join(' ')}\n`,
  );
  process.exit(2);
}

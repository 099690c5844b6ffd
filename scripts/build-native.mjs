// Builds meshplane's optional native P-256 signature check (native/p256.c,
// binding.gyp) with node-gyp, as the package's `install` script. It needs a
// C compiler, make, python3 and Node's headers (npm's `nodedir`, or the
// include/node next to this Node). A failed build is a warning, never a
// failed install: the online CA then checks signatures with node:crypto
// (correct, slower: src/pki/p256.ts says by how much), and says so when it
// starts. MESHPLANE_SKIP_NATIVE=1 skips the build.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const warn = (why) => {
  process.stderr.write(`meshplane: the optional native P-256 check was not built (${why}); pki serve and pki sign use node:crypto instead. See README "Native signature check".\n`);
  process.exit(0);
};

if (process.env.MESHPLANE_SKIP_NATIVE === '1') warn('MESHPLANE_SKIP_NATIVE=1');
/** npm hands its node-gyp to lifecycle scripts; run by hand, the one bundled with npm. */
function nodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  const npmRoot = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
  try {
    return createRequire(join(npmRoot, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return undefined;
  }
}
const gyp = nodeGyp();
if (gyp === undefined) warn('node-gyp not found');
const args = [gyp, 'rebuild'];
// Node's own headers beside this Node, when npm's config names none (no download: installs here are offline).
const headers = join(dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(join(headers, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${headers}`);
const run = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', timeout: 300_000 });
if (run.status !== 0) {
  const lines = `${run.stdout ?? ''}${run.stderr ?? ''}`.split('\n').filter((l) => /error|ERR!/i.test(l));
  warn(`node-gyp exited ${run.status ?? run.signal ?? run.error?.message}: ${lines.slice(0, 3).join(' | ') || 'no error line'}`);
}
process.stdout.write('meshplane: built the native P-256 check (build/Release/meshplane_p256.node)\n');

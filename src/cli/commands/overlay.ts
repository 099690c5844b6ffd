import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../../errors.js';
import { DEFAULT_GATEWAY_GROUP, OverlayError, describeProblem, generateHostKeys, paths, renderHost, writeRendered } from '../../overlay/index.js';
import type { Command, CommandIO } from '../context.js';
import { EXIT_INVALID, EXIT_OK } from '../context.js';
import { INPUT_OPTIONS, INPUT_USAGE, topologyFrom } from '../inputs.js';

const USAGE = `meshplane overlay render --topology FILE --host NAME --out DIR [options]
meshplane overlay keygen --topology FILE --host NAME --out DIR [options]

render: writes the host's overlay files under DIR at the paths they take on
the host: DIR/etc/tinc/<overlay>/{tinc.conf,hosts/*,tinc-up,tinc-down} for
tinc overlays, DIR/etc/wireguard/<overlay>.conf for WireGuard overlays, and
DIR/etc/nftables.d/meshplane.nft. Files already right are not touched; files
an earlier render wrote and this one does not are removed. Prints what
changed and a summary line.

keygen: run on the host itself (--out /). Makes a key pair per overlay the
host is on, unless its private key exists: DIR/etc/tinc/<overlay>/rsa_key.priv
or DIR/etc/wireguard/<overlay>.key (mode 0600). Writes the public keys as
<keys>/<host>.<overlay>.pub; gather those from every host into the keys
directory render reads.

  -t, --topology FILE    the compiled Topology (or give the inputs instead:)
${INPUT_USAGE}
      --host NAME        the host to render or make keys for
      --out DIR          root to write under ("/" on the host itself)
      --keys DIR         public keys directory (default DIR/${paths.keysDir})
      --gateway-group G  render: inventory group of the gateway hosts (default ${DEFAULT_GATEWAY_GROUP})
      --json             print the report as JSON`;

export const overlayCommand: Command = {
  name: 'overlay',
  summary: 'render tinc/WireGuard/nftables files for a host, or make its overlay keys',
  usage: USAGE,
  run(args, io) {
    const [action, ...rest] = args;
    if (action !== 'render' && action !== 'keygen') throw new UsageError(`expected "render" or "keygen"${action === undefined ? '' : `, not "${action}"`}`);
    const { values, positionals } = parseArgs({
      args: rest,
      options: {
        ...INPUT_OPTIONS,
        topology: { type: 'string', short: 't' },
        host: { type: 'string' },
        out: { type: 'string' },
        keys: { type: 'string' },
        'gateway-group': { type: 'string', default: DEFAULT_GATEWAY_GROUP },
        json: { type: 'boolean', default: false },
      },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    if (values.host === undefined) throw new UsageError('--host NAME is required');
    if (values.out === undefined) throw new UsageError('--out DIR is required ("/" on the host itself)');
    const root = resolve(io.cwd, values.out);
    const keysDir = values.keys === undefined ? resolve(root, paths.keysDir) : resolve(io.cwd, values.keys);
    const topology = topologyFrom(values, io);
    if (topology === undefined) return EXIT_INVALID;
    try {
      if (action === 'keygen') return keygen(generateHostKeys(topology, values.host, { root, keysDir }), values.json, io);
      const files = renderHost(topology, values.host, { keysDir, gatewayGroup: values['gateway-group'] });
      const report = writeRendered(root, files);
      if (values.json) {
        io.stdout(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        for (const path of report.written) io.stdout(`written ${path}\n`);
        for (const path of report.removed) io.stdout(`removed ${path}\n`);
        io.stdout(`${values.host}: ${report.written.length} written, ${report.unchanged.length} unchanged, ${report.removed.length} removed\n`);
      }
      return EXIT_OK;
    } catch (err) {
      if (!(err instanceof OverlayError)) throw err;
      // Every problem on its own line, each with its code.
      for (const problem of err.problems) io.stderr(`meshplane overlay ${action}: error ${problem.code}: ${describeProblem(problem)}\n`);
      io.stderr(`${err.problems.length} error(s); nothing was written\n`);
      return EXIT_INVALID;
    }
  },
};

function keygen(results: ReturnType<typeof generateHostKeys>, json: boolean, io: CommandIO): number {
  if (json) {
    io.stdout(`${JSON.stringify(results, null, 2)}\n`);
    return EXIT_OK;
  }
  for (const r of results) {
    io.stdout(`${r.overlay} (${r.driver}): ${r.action} ${r.privateKeyFile}; public key ${r.publicKeyFile}${r.publicWritten ? ' (written)' : ''}\n`);
  }
  if (results.length === 0) io.stdout('the host is on no overlay: no keys needed\n');
  return EXIT_OK;
}

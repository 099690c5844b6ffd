import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../../errors.js';
import { writeFileAtomic } from '../../lib/atomic-write.js';
import { compileTopology } from '../../config/index.js';
import { readTopology, serializeTopology, toAnsibleInventory, topologyForHost } from '../../topology/index.js';
import type { Command } from '../context.js';
import { EXIT_INVALID, EXIT_OK } from '../context.js';
import { INPUT_OPTIONS, INPUT_USAGE, loadInputs, reportDiagnostics } from '../inputs.js';

export const compileCommand: Command = {
  name: 'compile',
  summary: 'compile the inputs into the Topology JSON (or an Ansible dynamic inventory)',
  usage: `meshplane compile [options]

Validates the inputs, places every service and prints the Topology as JSON.
With --format ansible, prints the Ansible dynamic-inventory JSON (one group
per service, _meta.hostvars) that a script inventory returns for --list.

${INPUT_USAGE}
  -o, --out FILE         write to FILE (atomically) instead of stdout
      --format json|ansible   output format (default json)
      --host NAME        print only what host NAME needs (overlays it is not on
                         left out); what the Ansible roles ship to each host
  -t, --topology FILE    start from a compiled Topology instead of the inputs
      --list             accepted and ignored (lets a wrapper script pass Ansible's --list)
      --stats            print phase timings and peak memory to stderr`,
  run(args, io) {
    const { values } = parseArgs({
      args: [...args],
      options: {
        ...INPUT_OPTIONS,
        out: { type: 'string', short: 'o' },
        format: { type: 'string', default: 'json' },
        list: { type: 'boolean', default: false },
        host: { type: 'string' },
        topology: { type: 'string', short: 't' },
        stats: { type: 'boolean', default: false },
      },
      strict: true,
    });
    if (values.format !== 'json' && values.format !== 'ansible') throw new UsageError(`--format must be json or ansible, not "${values.format}"`);
    const started = performance.now();
    let topology;
    let loaded = started;
    if (values.topology !== undefined) topology = readTopology(resolve(io.cwd, values.topology));
    else {
      const config = loadInputs(values, io);
      loaded = performance.now();
      if (!reportDiagnostics(config, io)) return EXIT_INVALID;
      topology = compileTopology(config);
    }
    if (values.host !== undefined) topology = topologyForHost(topology, values.host);
    const compiled = performance.now();
    const output = values.format === 'ansible' ? `${JSON.stringify(toAnsibleInventory(topology), null, 2)}\n` : serializeTopology(topology);
    if (values.out !== undefined) writeFileAtomic(resolve(io.cwd, values.out), output);
    else io.stdout(output);
    const written = performance.now();
    if (values.stats) {
      const ms = (a: number, b: number): string => (b - a).toFixed(1);
      io.stderr(
        `stats: read+validate ${ms(started, loaded)} ms, schedule+build ${ms(loaded, compiled)} ms, ` +
          `serialize+write ${ms(compiled, written)} ms, peak rss ${(process.resourceUsage().maxRSS / 1024).toFixed(1)} MiB\n`,
      );
    }
    return EXIT_OK;
  },
};

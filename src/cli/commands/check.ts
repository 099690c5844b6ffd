import { parseArgs } from 'node:util';
import { compileTopology, formatDiagnostic } from '../../config/index.js';
import type { Command } from '../context.js';
import { EXIT_INVALID, EXIT_OK } from '../context.js';
import { INPUT_OPTIONS, INPUT_USAGE, loadInputs } from '../inputs.js';

export const checkCommand: Command = {
  name: 'check',
  summary: 'validate services.yml and the inventory; print every problem',
  usage: `meshplane check [options]

Reads both inputs, validates them together and prints every error and
warning as file:line:col. Exits 1 when there is any error.

${INPUT_USAGE}
      --format text|json  output format (default text)`,
  run(args, io) {
    const { values } = parseArgs({ args: [...args], options: { ...INPUT_OPTIONS, format: { type: 'string', default: 'text' } }, strict: true });
    const config = loadInputs(values, io);
    const diagnostics = config.diagnostics.sorted();
    if (values.format === 'json') {
      io.stdout(`${JSON.stringify({ ok: config.ok, diagnostics }, null, 2)}\n`);
      return config.ok ? EXIT_OK : EXIT_INVALID;
    }
    for (const diagnostic of diagnostics) io.stderr(`${formatDiagnostic(diagnostic)}\n`);
    if (!config.ok) {
      io.stderr(`${config.diagnostics.errors.length} error(s), ${config.diagnostics.warnings.length} warning(s)\n`);
      return EXIT_INVALID;
    }
    const topology = compileTopology(config);
    const instances = Object.values(topology.services).reduce((sum, s) => sum + s.instances.length, 0);
    io.stdout(
      `ok: ${Object.keys(topology.hosts).length} hosts, ${Object.keys(topology.services).length} services, ` +
        `${instances} instances, ${topology.overlays.length} overlays, ${config.diagnostics.warnings.length} warning(s)\n`,
    );
    return EXIT_OK;
  },
};

/**
 * The `meshplane` command line. Each subcommand lives in commands/ and
 * returns an exit code: 0 ok, 1 invalid input (config errors), 2 misuse.
 */
import { readFileSync } from 'node:fs';
import { MeshplaneError, UsageError } from '../errors.js';
import type { Command, CommandIO } from './context.js';
import { EXIT_INVALID, EXIT_USAGE } from './context.js';
import { checkCommand } from './commands/check.js';
import { compileCommand } from './commands/compile.js';
import { dnsCommand } from './commands/dns.js';
import { gatewayCommand } from './commands/gateway.js';
import { agentCommand } from './commands/agent.js';
import { overlayCommand } from './commands/overlay.js';
import { showCommand } from './commands/show.js';
import { upCommand } from './commands/up.js';
import { pkiCommand } from './commands/pki.js';
import { releaseHangups } from './early-signals.js';

const COMMANDS: readonly Command[] = [checkCommand, compileCommand, showCommand, dnsCommand, overlayCommand, pkiCommand, gatewayCommand, agentCommand, upCommand];
/** Daemons that take SIGHUP (a reload; the agent ignores it): they replay one held during start-up. */
const TAKES_HANGUPS = new Set<Command>([dnsCommand, gatewayCommand, agentCommand]);

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `usage: meshplane <command> [options]

commands:
${lines.join('\n')}

Run "meshplane <command> --help" for a command's options.
`;
}

export async function main(argv: readonly string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    io.stdout(overview());
    return name === undefined ? EXIT_USAGE : 0;
  }
  if (name === 'version' || name === '--version') {
    io.stdout(`meshplane ${version()}\n`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name || c.aliases?.includes(name));
  if (command === undefined) {
    io.stderr(`meshplane: error CLI_ERR_USAGE: unknown command "${name}"\n\n${overview()}`);
    return EXIT_USAGE;
  }
  if (!TAKES_HANGUPS.has(command)) releaseHangups();
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(`${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr(`meshplane ${name}: error CLI_ERR_USAGE: ${(err as Error).message}\n\n${command.usage}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof MeshplaneError) {
      io.stderr(`meshplane ${name}: error ${err.code}: ${err.message}\n`);
      return EXIT_INVALID;
    }
    throw err;
  }
}

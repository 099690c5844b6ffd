#!/usr/bin/env -S node --initial-old-space-size=64
// Why the V8 flag: with the gateway's and agent's modules loaded, V8 sized the
// old generation so tightly that a busy tunnel's short-lived buffers set off
// a full collection every 50-100 ms (50 per 3 s transfer), and one stream
// moved 3.0-3.6 Gbit/s instead of 4.5-5.1 (measured with iperf3 through the
// tunnel, see BENCHMARKS.md). A larger initial old space avoids that; it
// cannot be set from inside the process (v8.setFlagsFromString comes too
// late), hence the shebang. `npm start` and the units run through it.
/** Executable entry point of the `meshplane` command (package.json "bin"). */
import type { CommandIO } from './context.js';
import { holdHangups } from './early-signals.js';

// Before the command's modules load (hence the dynamic import): a SIGHUP from now on no longer kills a
// daemon that is still starting (src/cli/early-signals.ts).
holdHangups();
const { main } = await import('./main.js');

// `meshplane compile | head` closes the pipe early: stop quietly, like other CLIs.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

const io: CommandIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  cwd: process.cwd(),
};

main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`meshplane: internal error: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 70;
  },
);

// Every process a bench starts is stopped on any exit of the bench: its
// normal end (stopAll), an error or uncaught exception (the 'exit' hook), or
// a signal (exitOnSignals). Without this a failed run left haproxy, sshd or
// iperf3 listening on the fixed ports, and the next run failed to bind.
// BENCH_PIDS_FILE, when set, gets a line "<pid> <command>" per started
// process (the tests check those are gone).
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';

const running = new Set();
const cleanups = [];
let hooked = false;

function hook() {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    killAll('SIGKILL');
    for (const cleanup of cleanups.splice(0)) {
      try {
        cleanup();
      } catch {
        // best effort: the process is exiting
      }
    }
  });
}

/** Remembers `child` until it exits; returns it. */
export function track(child) {
  hook();
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (process.env.BENCH_PIDS_FILE && child.pid !== undefined) appendFileSync(process.env.BENCH_PIDS_FILE, `${child.pid} ${child.spawnfile}\n`);
  return child;
}

/** spawn(), tracked. */
export function spawnTracked(command, args, options) {
  return track(spawn(command, args, options));
}

/** A synchronous cleanup (removing a temporary directory) run on any exit, after the processes are killed. */
export function atExit(cleanup) {
  hook();
  cleanups.push(cleanup);
}

/** Signals every process still running (synchronous: usable in an 'exit' handler). */
export function killAll(signal = 'SIGKILL') {
  for (const child of running) {
    try {
      child.kill(signal);
    } catch {
      // gone already
    }
  }
}

/** SIGTERM (a --cpu-prof child writes its profile), then SIGKILL to what is left after `graceMs`. */
export async function stopAll(graceMs = 200) {
  if (running.size === 0) return;
  killAll('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (running.size > 0 && Date.now() < deadline) await sleep(20);
  killAll('SIGKILL');
}

/**
 * Exits on these signals (128 + the signal's number), the 'exit' hook then
 * stopping the processes. A signal that arrives while the bench waits in a
 * synchronous call (execFileSync of wrk or iperf3) is handled when it returns.
 */
export function exitOnSignals(signals = ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  hook();
  const codes = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };
  for (const signal of signals) {
    process.once(signal, () => {
      process.stderr.write(`${signal}: stopping ${running.size} started process(es)\n`);
      process.exit(codes[signal] ?? 1);
    });
  }
}

/**
 * The root logger (pino): JSON lines on stderr, so stdout stays free for
 * what a command prints for people. Components log through a child with
 * `component` set; secrets are redacted by path.
 */
import { pino } from 'pino';
import type { Logger } from 'pino';


/** `destination`: a file descriptor (default 2, stderr) or a file to append to (created with its directory). */
export function createLogger(level: string = process.env['MESHPLANE_LOG_LEVEL'] ?? 'info', destination: number | string = 2): Logger {
  return pino(
    {
      name: 'meshplane',
      level,
      redact: { paths: ['*.private_key', '*.privateKey', '*.token', 'key', 'token'], censor: '[redacted]' },
    },
    pino.destination(typeof destination === 'number' ? { fd: destination, sync: false } : { dest: destination, mkdir: true, sync: false }),
  );
}

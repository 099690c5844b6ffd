/**
 * The root logger (pino): JSON lines on stderr, so stdout stays free for
 * what a command prints for people. Components log through a child with
 * `component` set; secrets are redacted by path.
 */
import { pino } from 'pino';
import type { Logger } from 'pino';

export function createLogger(level: string = process.env['MESHPLANE_LOG_LEVEL'] ?? 'info'): Logger {
  return pino(
    {
      name: 'meshplane',
      level,
      redact: { paths: ['*.private_key', '*.privateKey', '*.token', 'key', 'token'], censor: '[redacted]' },
    },
    pino.destination({ fd: 2, sync: false }),
  );
}

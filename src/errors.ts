/**
 * One base error class for the whole project. Every error a user can see has
 * a stable `code` (CONFIG_ERR_*, CLI_ERR_*, ...). Callers and tests match on
 * `code`, never on message text; docs/errors.md lists every code with its fix
 * and a test keeps the two in step.
 */
export class MeshplaneError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MeshplaneError';
    this.code = code;
  }
}

/** Raised for command-line misuse: unknown command, missing argument. */
export class UsageError extends MeshplaneError {
  constructor(message: string) {
    super('CLI_ERR_USAGE', message);
    this.name = 'UsageError';
  }
}

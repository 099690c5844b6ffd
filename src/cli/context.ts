/**
 * What every command gets: its arguments and where to write. Commands return
 * an exit code instead of calling process.exit, so tests can run them in
 * process.
 */
export interface CommandIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly cwd: string;
}

export interface Command {
  readonly name: string;
  /** Other names that run the same command. */
  readonly aliases?: readonly string[];
  readonly summary: string;
  readonly usage: string;
  run(args: readonly string[], io: CommandIO): Promise<number> | number;
}

/** Exit codes shared by all commands. */
export const EXIT_OK = 0;
export const EXIT_INVALID = 1;
export const EXIT_USAGE = 2;

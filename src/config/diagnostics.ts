/**
 * Diagnostics: every problem found in the inputs, with where it is and what
 * would be valid. Validation collects them all instead of stopping at the
 * first, so `meshplane check` can print every error in one run.
 */
import { MeshplaneError } from '../errors.js';

/** A position in an input file; line and column are 1-based. */
export interface Loc {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

type Severity = 'error' | 'warning';

export interface Diagnostic {
  readonly code: string;
  readonly severity: Severity;
  readonly loc: Loc;
  /** Dotted path of the offending key, e.g. `web.gateway_endpoints[0].port`. */
  readonly key: string;
  readonly message: string;
  /** What was found, as the user wrote it (when there is something to show). */
  readonly found?: string;
  /** What would be valid. */
  readonly expected?: string;
}

/** Collects diagnostics; shared by every validation step of one compile. */
export class Diagnostics {
  readonly items: Diagnostic[] = [];

  error(code: string, loc: Loc, key: string, message: string, extra: { found?: string; expected?: string } = {}): void {
    this.items.push({ code, severity: 'error', loc, key, message, ...extra });
  }

  warning(code: string, loc: Loc, key: string, message: string, extra: { found?: string; expected?: string } = {}): void {
    this.items.push({ code, severity: 'warning', loc, key, message, ...extra });
  }

  get errors(): Diagnostic[] {
    return this.items.filter((d) => d.severity === 'error');
  }

  get warnings(): Diagnostic[] {
    return this.items.filter((d) => d.severity === 'warning');
  }

  hasErrors(): boolean {
    return this.items.some((d) => d.severity === 'error');
  }

  /** Diagnostics in file, line, column order: the order an editor shows them. */
  sorted(): Diagnostic[] {
    return [...this.items].sort(
      (a, b) =>
        a.loc.file.localeCompare(b.loc.file) ||
        a.loc.line - b.loc.line ||
        a.loc.col - b.loc.col ||
        a.code.localeCompare(b.code),
    );
  }
}

/** `file:line:col: error CODE key: message (found X; expected Y)` */
export function formatDiagnostic(d: Diagnostic): string {
  const where = `${d.loc.file}:${d.loc.line}:${d.loc.col}`;
  const details: string[] = [];
  if (d.found !== undefined) details.push(`found ${d.found}`);
  if (d.expected !== undefined) details.push(`expected ${d.expected}`);
  const tail = details.length > 0 ? ` (${details.join('; ')})` : '';
  const key = d.key === '' ? '' : `${d.key}: `;
  return `${where}: ${d.severity} ${d.code} ${key}${d.message}${tail}`;
}

/** Thrown by library entry points that need a valid configuration. */
export class ConfigError extends MeshplaneError {
  readonly diagnostics: readonly Diagnostic[];

  constructor(diagnostics: readonly Diagnostic[]) {
    const errors = diagnostics.filter((d) => d.severity === 'error');
    const first = errors[0];
    const summary = first === undefined ? 'invalid configuration' : formatDiagnostic(first);
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
    super(first?.code ?? 'CONFIG_ERR_INVALID', `${summary}${more}`);
    this.name = 'ConfigError';
    this.diagnostics = diagnostics;
  }
}

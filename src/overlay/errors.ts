/**
 * Overlay problems name the overlay and the host they are about. Rendering
 * collects every problem of the host's overlays and throws them together,
 * so one run shows all that needs fixing.
 */
import { MeshplaneError } from '../errors.js';

type OverlayErrorCode =
  | 'OVERLAY_ERR_UNKNOWN_HOST'
  | 'OVERLAY_ERR_MISSING_KEY'
  | 'OVERLAY_ERR_BAD_KEY'
  | 'OVERLAY_ERR_KEY_FILE';

export interface OverlayProblem {
  readonly code: OverlayErrorCode;
  readonly overlay: string | null;
  readonly host: string;
  readonly message: string;
}

/** `overlay vpn0, host h2: message` */
export function describeProblem(problem: OverlayProblem): string {
  const where = problem.overlay === null ? `host ${problem.host}` : `overlay ${problem.overlay}, host ${problem.host}`;
  return `${where}: ${problem.message}`;
}

export class OverlayError extends MeshplaneError {
  readonly problems: readonly OverlayProblem[];

  constructor(problems: readonly OverlayProblem[]) {
    const [first] = problems;
    if (first === undefined) throw new Error('OverlayError needs at least one problem');
    super(first.code, problems.map(describeProblem).join('\n'));
    this.name = 'OverlayError';
    this.problems = problems;
  }
}

/**
 * Prints one plain closing line, "tests: N passed, N failed, N skipped",
 * after vitest's own summary, so CI logs end with the counts in a fixed form.
 */
import type { Reporter } from 'vitest/reporters';

interface TaskLike {
  type: string;
  mode?: string;
  result?: { state?: string };
  tasks?: TaskLike[];
}

export default class SummaryReporter implements Reporter {
  onFinished(files: TaskLike[] = [], errors: unknown[] = []): void {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    /** Counts tests under `task`; returns how many of them failed. */
    const visit = (task: TaskLike): number => {
      if (task.type === 'test') {
        const state = task.result?.state;
        if (state === 'pass') counts.passed++;
        else if (state === 'fail') counts.failed++;
        else counts.skipped++;
        return state === 'fail' ? 1 : 0;
      }
      let failedBelow = 0;
      for (const child of task.tasks ?? []) failedBelow += visit(child);
      // A suite or file that failed on its own (a hook, or it did not load)
      // fails the run even though none of its tests did.
      if (task.result?.state === 'fail' && failedBelow === 0) {
        counts.failed++;
        return 1;
      }
      return failedBelow;
    };
    for (const file of files) visit(file);
    counts.failed += errors.length;
    process.stdout.write(`\ntests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`);
  }
}

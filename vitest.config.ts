import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The summary reporter prints the "N passed, N failed" line CI reads.
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Ceilings, not expectations: most tests take a second or two, and they must
    // still pass on a machine busy with other work (npm run test:busy).
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // expect.poll waits for the product to reach a state: a ceiling for a busy
    // machine (it returns as soon as the state is reached), not vitest's 1 s default.
    expect: { poll: { timeout: 30_000 } },
    // The summary reporter prints the "N passed, N failed" line CI reads.
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});

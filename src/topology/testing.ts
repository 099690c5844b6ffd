/**
 * For tests only; not used by src/. What the Topology's tests reach past
 * its front door (index.ts) for.
 */
export { parseTopology } from './io.js';
export type { Placement, ScheduleRequest } from './scheduler.js';

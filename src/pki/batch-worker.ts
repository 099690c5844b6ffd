/** Worker thread of signBatch: loads the CA once, signs hosts from the shared counter, posts its outcome. */
import { parentPort, workerData } from 'node:worker_threads';
import type { Topology } from '../topology/index.js';
import type { BatchJob } from './batch.js';
import { drain } from './batch.js';
import { loadCa } from './ca.js';
import { LeafSigner } from './sign.js';

const data = workerData as { caDir: string; topology: Topology; jobs: BatchJob[]; counter: Int32Array; stagingDir: string; now?: number; lifetimeMs?: number };
const context = {
  topology: data.topology,
  signer: new LeafSigner(loadCa(data.caDir)),
  stagingDir: data.stagingDir,
  now: data.now === undefined ? undefined : new Date(data.now),
  lifetimeMs: data.lifetimeMs,
};
parentPort?.postMessage(drain(context, data.jobs, data.counter));

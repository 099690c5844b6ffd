/**
 * Signing many CSRs at once: what the controller does during an Ansible run
 * (every host's CSRs fetched into one directory). Signing is CPU-bound
 * (~0.3 ms per certificate, most of it ECDSA), so every core signs: this
 * thread plus one worker thread per further core, each with its own
 * LeafSigner, taking hosts from one shared atomic counter.
 *
 * Layout: every <csrDir>/<host>/*.csr is signed for <host>, and all of a
 * host's certificates go into one file, <outDir>/<host>.pem, in CSR name
 * order: one file to copy back to each host, where `pki install --cert
 * <host>.pem` picks the certificate that matches the credential, kind and
 * key. (Ansible's `fetch` stores the CSRs per host the same way.)
 *
 * The output directory is replaced as a whole: the files are written into a
 * staging directory beside it, which is renamed into place at the end. That
 * is atomic for readers (they see the previous batch or this one) and costs
 * one file creation per host, where creating files is most of the time a
 * batch takes on a busy disk. The files are not fsynced: signed certificates
 * can always be signed again. (The one place that does not write through
 * writeFileAtomic: its files are new names in a private directory that no
 * reader sees until the rename.) Staging directories of a killed batch are
 * removed by the next one.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { MeshplaneError } from '../errors.js';
import { makeDirs, processAlive } from '../lib/atomic-write.js';
import type { Topology } from '../topology/index.js';
import { loadCa } from './ca.js';
import { MODES } from './files.js';
import { LeafSigner } from './sign.js';

/** One host's CSRs. */
export interface BatchJob {
  readonly host: string;
  /** CSR files, sorted by name. */
  readonly csrPaths: readonly string[];
}

interface BatchFailure {
  readonly csrPath: string;
  readonly code: string;
  readonly message: string;
}

interface BatchResult {
  /** Certificates signed. */
  readonly signed: number;
  /** Host files written. */
  readonly hosts: number;
  readonly failures: readonly BatchFailure[];
  /** Threads that signed (this one included). */
  readonly threads: number;
}

interface BatchOptions {
  readonly caDir: string;
  readonly topology: Topology;
  readonly jobs: readonly BatchJob[];
  /** Replaced as a whole by one <host>.pem per host. */
  readonly outDir: string;
  /** Threads that sign, this one included; default one per core. */
  readonly workers?: number;
  readonly now?: Date;
  readonly lifetimeMs?: number;
}

/** Every <csrDir>/<host>/*.csr, hosts and files sorted. */
export function batchJobs(csrDir: string): BatchJob[] {
  if (!existsSync(csrDir)) throw new MeshplaneError('PKI_ERR_READ', `cannot read CSR directory ${csrDir}: it does not exist`);
  const jobs: BatchJob[] = [];
  for (const hostEntry of readdirSync(csrDir, { withFileTypes: true }).filter((e) => e.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    const csrPaths = readdirSync(join(csrDir, hostEntry.name))
      .filter((f) => f.endsWith('.csr'))
      .sort()
      .map((f) => join(csrDir, hostEntry.name, f));
    if (csrPaths.length > 0) jobs.push({ host: hostEntry.name, csrPaths });
  }
  return jobs;
}

interface JobContext {
  readonly topology: Topology;
  readonly signer: LeafSigner;
  readonly stagingDir: string;
  readonly now?: Date;
  readonly lifetimeMs?: number;
}

interface JobOutcome {
  readonly signed: number;
  readonly failures: BatchFailure[];
}

/**
 * Signs one host's CSRs and writes its file. Refusals are returned, not
 * thrown, so one bad CSR does not stop the batch.
 */
function runJob(context: JobContext, job: BatchJob): JobOutcome {
  const failures: BatchFailure[] = [];
  const pems: string[] = [];
  for (const csrPath of job.csrPaths) {
    let csrPem: string;
    try {
      csrPem = readFileSync(csrPath, 'utf8');
    } catch (err) {
      failures.push({ csrPath, code: 'PKI_ERR_READ', message: `cannot read ${csrPath}: ${(err as Error).message}` });
      continue;
    }
    try {
      pems.push(context.signer.signCsr(context.topology, { csrPem, host: job.host, source: csrPath, now: context.now, lifetimeMs: context.lifetimeMs }).pem);
    } catch (err) {
      if (!(err instanceof MeshplaneError)) throw err;
      failures.push({ csrPath, code: err.code, message: err.message });
    }
  }
  if (pems.length === 0) return { signed: 0, failures };
  const file = join(context.stagingDir, `${job.host}.pem`);
  try {
    // A fresh file in the staging directory: nobody reads it before the whole directory is renamed into place.
    writeFileSync(file, pems.join(''), { flag: 'wx', mode: MODES.public });
  } catch (err) {
    return { signed: 0, failures: [...failures, ...job.csrPaths.map((csrPath) => ({ csrPath, code: 'PKI_ERR_WRITE', message: `cannot write ${file}: ${(err as Error).message}` }))] };
  }
  return { signed: pems.length, failures };
}

const WORKER_FILE = fileURLToPath(new URL('./batch-worker.js', import.meta.url));
/** Below this many hosts a worker's start-up (~0.2 s) costs more than it saves. */
const MIN_JOBS_PER_THREAD = 50;

/** Takes host indexes from the shared counter until none are left. */
export function drain(context: JobContext, jobs: readonly BatchJob[], counter: Int32Array): JobOutcome {
  const failures: BatchFailure[] = [];
  let signed = 0;
  for (let i = Atomics.add(counter, 0, 1); i < jobs.length; i = Atomics.add(counter, 0, 1)) {
    const outcome = runJob(context, jobs[i] as BatchJob);
    signed += outcome.signed;
    failures.push(...outcome.failures);
  }
  return { signed, failures };
}

/**
 * Signs every job. This thread and `threads - 1` workers take hosts from one
 * shared atomic counter, so a slow host or a late-starting worker never
 * leaves a core idle while work remains.
 */
export async function signBatch(options: BatchOptions): Promise<BatchResult> {
  const ca = loadCa(options.caDir);
  const threads = Math.max(1, options.workers ?? availableParallelism());
  // Worker threads need the compiled worker; from TypeScript sources (tests) everything runs here.
  const extra = existsSync(WORKER_FILE) ? Math.min(threads - 1, Math.floor(options.jobs.length / MIN_JOBS_PER_THREAD)) : 0;
  const counter = new Int32Array(new SharedArrayBuffer(4));
  const stagingDir = `${options.outDir}.partial-${process.pid}`;
  removeStaleStaging(options.outDir);
  try {
    makeDirs(dirname(stagingDir), { errorCode: 'PKI_ERR_WRITE' });
    rmSync(stagingDir, { recursive: true, force: true });
    mkdirSync(stagingDir);
  } catch (err) {
    // Name the directory the operator gave (the reason says which part of its path is wrong).
    if (err instanceof MeshplaneError) throw new MeshplaneError(err.code, `cannot write ${options.outDir}: ${(err.cause as Error).message}`, { cause: err });
    throw new MeshplaneError('PKI_ERR_WRITE', `cannot create ${stagingDir}: ${(err as Error).message}`, { cause: err });
  }
  const workerData = { caDir: options.caDir, topology: options.topology, jobs: options.jobs, counter, stagingDir, now: options.now?.getTime(), lifetimeMs: options.lifetimeMs };
  const workers = Array.from({ length: extra }, () => {
    const worker = new Worker(WORKER_FILE, { workerData });
    return new Promise<JobOutcome>((resolve, reject) => {
      worker.once('message', (outcome: JobOutcome) => resolve(outcome));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`signing worker exited with code ${code}`)));
    });
  });
  const context = { topology: options.topology, signer: new LeafSigner(ca), stagingDir, now: options.now, lifetimeMs: options.lifetimeMs };
  const outcomes = [drain(context, options.jobs, counter), ...(await Promise.all(workers))];
  const failures = outcomes.flatMap((o) => o.failures).sort((a, b) => a.csrPath.localeCompare(b.csrPath));
  replaceDir(stagingDir, options.outDir);
  const signed = outcomes.reduce((sum, o) => sum + o.signed, 0);
  return { signed, hosts: readdirSync(options.outDir).length, failures, threads: 1 + extra };
}

/**
 * Removes `<outDir>.partial-<pid>` and `<outDir>.old-<pid>` directories left
 * by a batch that was killed (its process is gone).
 */
function removeStaleStaging(outDir: string): void {
  const prefix = `${basename(outDir)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(outDir));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = /^(?:partial|old)-(\d+)$/.exec(name.slice(prefix.length))?.[1];
    if (pid !== undefined && Number(pid) !== process.pid && !processAlive(Number(pid))) rmSync(join(dirname(outDir), name), { recursive: true, force: true });
  }
}

/** Renames `staging` to `target`, replacing a previous `target`. */
function replaceDir(staging: string, target: string): void {
  const old = `${target}.old-${process.pid}`;
  try {
    if (existsSync(target)) renameSync(target, old);
    renameSync(staging, target);
    rmSync(old, { recursive: true, force: true });
  } catch (err) {
    throw new MeshplaneError('PKI_ERR_WRITE', `cannot move the signed certificates from ${staging} to ${target}: ${(err as Error).message}`, { cause: err });
  }
}

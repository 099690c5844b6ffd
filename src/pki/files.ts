/**
 * Where credential files live and how they are written. Layout under the
 * credentials root (default /etc/credentials):
 *
 *   x509/<name>/ca.pem                   0444  the mesh CA
 *   x509/<name>/crl.pem                  0444  the CA's CRL, when it has one
 *   x509/<name>/<kind>/                  0750  root:<name>-credentials
 *   x509/<name>/<kind>/cert.pem          0444
 *   x509/<name>/<kind>/private_key.pem   0440  root:<name>-credentials
 *   x509/<name>/<kind>/request.csr       0444  (pki request only)
 *
 * Every file is written to a temporary file in the same directory, given its
 * mode and owner, fsynced, then renamed over the target (and the directory
 * fsynced): readers see the old file or the new one, never half of one, and
 * never a file with the wrong owner. Without root, ownership and groups are
 * skipped; modes are still applied.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, fchmodSync, fchownSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { MeshplaneError } from '../errors.js';
import type { CertKind } from './sans.js';

export const DEFAULT_CREDENTIALS_ROOT = '/etc/credentials';

export const MODES = {
  credentialDir: 0o755,
  kindDir: 0o750,
  privateKey: 0o440,
  certificate: 0o444,
  caKey: 0o600,
  caDir: 0o700,
  public: 0o644,
} as const;

export interface Owner {
  readonly uid: number;
  readonly gid: number;
}

export interface CredentialPaths {
  readonly dir: string;
  readonly ca: string;
  readonly crl: string;
  kindDir(kind: CertKind): string;
  cert(kind: CertKind): string;
  key(kind: CertKind): string;
  csr(kind: CertKind): string;
}

export function credentialPaths(root: string, name: string): CredentialPaths {
  const dir = join(root, 'x509', name);
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    crl: join(dir, 'crl.pem'),
    kindDir: (kind) => join(dir, kind),
    cert: (kind) => join(dir, kind, 'cert.pem'),
    key: (kind) => join(dir, kind, 'private_key.pem'),
    csr: (kind) => join(dir, kind, 'request.csr'),
  };
}

export const credentialGroup = (name: string): string => `${name}-credentials`;

/** root:root for the public files beside a key owned by `keyOwner` (none when ownership is not managed). */
export const publicOwner = (keyOwner: Owner | undefined): Owner | undefined => (keyOwner === undefined ? undefined : { uid: 0, gid: 0 });

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

function lookupGid(group: string): number | undefined {
  const result = spawnSync('getent', ['group', group], { encoding: 'utf8' });
  if (result.status !== 0) return undefined;
  const gid = Number(result.stdout.split(':')[2]);
  return Number.isInteger(gid) ? gid : undefined;
}

/**
 * The owner of a credential's keys: root and `<name>-credentials`, the group
 * created (as a system group) when missing. Undefined when not root, or when
 * `manage` is false (local state directories): files then stay owned by the
 * current user.
 */
export function credentialOwner(name: string, manage = true): Owner | undefined {
  if (!manage || !isRoot()) return undefined;
  const group = credentialGroup(name);
  let gid = lookupGid(group);
  if (gid === undefined) {
    const result = spawnSync('groupadd', ['--system', group], { encoding: 'utf8' });
    gid = lookupGid(group);
    if (gid === undefined) {
      throw new MeshplaneError('PKI_ERR_GROUP', `cannot create group ${group}: ${(result.stderr || result.error?.message || `groupadd exited ${result.status}`).trim()}`);
    }
  }
  return { uid: 0, gid };
}

/**
 * Creates `path` (and parents) and sets its mode and owner even when it
 * already existed. Also removes temporary files left by a writer that was
 * killed before its rename (their process is gone).
 */
export function ensureDir(path: string, mode: number, owner?: Owner): void {
  try {
    mkdirSync(path, { recursive: true, mode });
    chmodSync(path, mode);
    if (owner !== undefined) chownSync(path, owner.uid, owner.gid);
    for (const name of readdirSync(path)) {
      const pid = TEMP_NAME.exec(name)?.[1];
      if (pid !== undefined && !processAlive(Number(pid))) rmSync(join(path, name), { force: true });
    }
  } catch (err) {
    throw writeError(path, err);
  }
}

/** `.<file>.<pid>.<ms>.<random>.tmp`, as writeFileSecure names its temporary files. */
const TEMP_NAME = /^\..+\.(\d+)\.\d+\.[a-z0-9]+\.tmp$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Atomic write with exact mode and owner (see the module comment). */
export function writeFileSecure(path: string, data: string | Uint8Array, mode: number, owner?: Owner, options: { durable?: boolean } = {}): void {
  // durable: false skips the fsyncs (still atomic by rename) for bulk outputs that can be remade, such as batch-signed certificates.
  const durable = options.durable !== false;
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 8)}.tmp`);
  try {
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
    const fd = openSync(temp, 'wx', 0o600);
    try {
      const buffer = typeof data === 'string' ? Buffer.from(data) : data;
      let offset = 0;
      while (offset < buffer.length) offset += writeSync(fd, buffer, offset);
      // fchmod after open: the umask must not change the mode we promise.
      fchmodSync(fd, mode);
      if (owner !== undefined) fchownSync(fd, owner.uid, owner.gid);
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
    if (durable) fsyncDir(dir);
  } catch (err) {
    rmSync(temp, { force: true });
    throw writeError(path, err);
  }
}

/** Removes `path` (if present) durably: the unlink is on disk before anything written after it. */
export function removeFileDurable(path: string): void {
  try {
    if (!existsSync(path)) return;
    rmSync(path, { force: true });
    fsyncDir(dirname(path));
  } catch (err) {
    throw writeError(path, err);
  }
}

/** Puts a directory's entries (a rename, an unlink) on disk. */
function fsyncDir(dir: string): void {
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

function writeError(path: string, err: unknown): MeshplaneError {
  if (err instanceof MeshplaneError) return err;
  return new MeshplaneError('PKI_ERR_WRITE', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
}

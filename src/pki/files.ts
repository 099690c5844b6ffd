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
 * never a file with the wrong owner. Owners (root:<name>-credentials) and
 * groups are only set under /etc/credentials or when asked for
 * (wantsSystemOwners); modes are always applied.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { MeshplaneError } from '../errors.js';
import { describeFsError, fsyncDir, makeDirs, removeStaleTemps, writeFileAtomic } from '../lib/atomic-write.js';
import type { CertKind } from './sans.js';
import { DEFAULT_CREDENTIALS_ROOT, credentialDir, credentialFiles, credentialsDir } from '../topology/index.js';

export { DEFAULT_CREDENTIALS_ROOT };

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

interface CredentialPaths {
  readonly dir: string;
  readonly ca: string;
  readonly crl: string;
  kindDir(kind: CertKind): string;
  cert(kind: CertKind): string;
  key(kind: CertKind): string;
  csr(kind: CertKind): string;
}

/** The layout (src/topology/credential-layout.ts) in the shape the writers use. */
export function credentialPaths(root: string, name: string): CredentialPaths {
  const client = credentialFiles(root, name, 'client');
  const files = { client, server: credentialFiles(root, name, 'server') };
  return {
    dir: credentialDir(root, name),
    ca: client.ca,
    crl: client.crl,
    kindDir: (kind) => files[kind].kindDir,
    cert: (kind) => files[kind].cert,
    key: (kind) => files[kind].key,
    csr: (kind) => files[kind].csr,
  };
}

const credentialGroup = (name: string): string => `${name}-credentials`;

/** root:root for the public files beside a key owned by `keyOwner` (none when ownership is not managed). */
export const publicOwner = (keyOwner: Owner | undefined): Owner | undefined => (keyOwner === undefined ? undefined : { uid: 0, gid: 0 });

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

function lookupGid(group: string): number | undefined {
  const result = spawnSync('getent', ['group', group], { encoding: 'utf8' });
  if (result.status !== 0) return undefined;
  const gid = Number(result.stdout.split(':')[2]);
  return Number.isInteger(gid) ? gid : undefined;
}

/**
 * Whether files under `root` get system owners (root:`<name>-credentials`,
 * the group created when missing). `asked` is the caller's explicit choice
 * (`--system-owners` / `--no-system-owners`); without one, only the system
 * credentials root (/etc/credentials) gets them, so issuing into a scratch
 * directory as root never creates groups in /etc/group nor chowns files.
 */
export function wantsSystemOwners(root: string, asked: boolean | undefined): boolean {
  return asked ?? resolve(root) === DEFAULT_CREDENTIALS_ROOT;
}

/**
 * The owner of a credential's keys: root and `<name>-credentials`, the group
 * created (as a system group) when missing. Undefined when `manage` is false
 * (a scratch root, a local state directory): files then stay owned by the
 * current user. Without root: undefined when ownership is only the default
 * (development), PKI_ERR_NOT_ROOT when it was asked for explicitly.
 */
export function credentialOwner(name: string, manage: boolean, explicit = false): Owner | undefined {
  if (!manage) return undefined;
  if (!isRoot()) {
    if (explicit) throw new MeshplaneError('PKI_ERR_NOT_ROOT', `system owners (root:${credentialGroup(name)}) were asked for, but only root can set them; run as root or leave out --system-owners`);
    return undefined;
  }
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
 * Creates `path` (and parents, with a `mkdir -p` that always ends) and sets
 * its mode and owner even when it already existed. Also removes temporary
 * files left by a writer that was killed before its rename (its process is
 * gone, or the file is older than 10 minutes).
 */
export function ensureDir(path: string, mode: number, owner?: Owner): void {
  makeDirs(path, { mode, errorCode: 'PKI_ERR_WRITE' });
  try {
    chmodSync(path, mode);
    if (owner !== undefined) chownSync(path, owner.uid, owner.gid);
  } catch (err) {
    throw new MeshplaneError('PKI_ERR_WRITE', `cannot write ${path}: ${describeFsError(err)}`, { cause: err });
  }
  removeStaleTemps(path);
}

/** Atomic write with exact mode and owner (see the module comment and src/lib/atomic-write.ts). */
export function writeFileSecure(path: string, data: string | Uint8Array, mode: number, owner?: Owner, options: { durable?: boolean } = {}): void {
  // durable: false skips the fsyncs (still atomic by rename) for bulk outputs that can be remade, such as batch-signed certificates.
  writeFileAtomic(path, data, { mode, owner, durable: options.durable, errorCode: 'PKI_ERR_WRITE' });
}

/** Removes `path` (if present) durably: the unlink is on disk before anything written after it. */
export function removeFileDurable(path: string): void {
  try {
    if (!existsSync(path)) return;
    rmSync(path, { force: true });
    fsyncDir(dirname(path));
  } catch (err) {
    throw new MeshplaneError('PKI_ERR_WRITE', `cannot remove ${path}: ${describeFsError(err)}`, { cause: err });
  }
}

/**
 * The directories of a credentials root that hold pki's files
 * (`x509/<name>/` and its `client/`, `server/`), for the stale temporary
 * file sweep at the start of a command.
 */
export function credentialDirs(root: string): string[] {
  const dirs: string[] = [];
  let names: string[];
  try {
    names = readdirSync(credentialsDir(root));
  } catch {
    return dirs;
  }
  for (const name of names) {
    const paths = credentialPaths(root, name);
    dirs.push(paths.dir, paths.kindDir('client'), paths.kindDir('server'));
  }
  return dirs;
}

/**
 * Where each overlay file lives on a host, relative to the root (`/` on the
 * host, `--out DIR` when rendering elsewhere). One place, so the renderer,
 * keygen, the README and the tests agree.
 */
import { posix } from 'node:path';

export const paths = {
  tincDir: (overlay: string): string => `etc/tinc/${overlay}`,
  tincConf: (overlay: string): string => `etc/tinc/${overlay}/tinc.conf`,
  tincHost: (overlay: string, node: string): string => `etc/tinc/${overlay}/hosts/${node}`,
  tincUp: (overlay: string): string => `etc/tinc/${overlay}/tinc-up`,
  tincDown: (overlay: string): string => `etc/tinc/${overlay}/tinc-down`,
  /** tincd's default PrivateKeyFile: `rsa_key.priv` in its configuration directory. */
  tincPrivateKey: (overlay: string): string => `etc/tinc/${overlay}/rsa_key.priv`,
  wireguardConf: (overlay: string): string => `etc/wireguard/${overlay}.conf`,
  wireguardPrivateKey: (overlay: string): string => `etc/wireguard/${overlay}.key`,
  firewall: 'etc/nftables.d/meshplane.nft',
  /** Public keys of every host, `<host>.<overlay>.pub`: keygen writes this host's, Ansible gathers all. */
  keysDir: 'etc/meshplane/overlay-keys',
  /** The files the last render wrote, so the next one can remove those no longer rendered. */
  manifest: 'var/lib/meshplane/overlay-files',
} as const;

export function publicKeyFile(host: string, overlay: string): string {
  return `${host}.${overlay}.pub`;
}

/** The absolute path a root-relative path takes on the host itself. */
export function onHost(relative: string): string {
  return posix.join('/', relative);
}

/**
 * Every lifetime in the PKI, in one place (smallstep `claims.go` style):
 * callers ask for a lifetime, `leafValidity` clamps nothing silently but
 * refuses anything outside min/max. The mesh-wide defaults and bounds that
 * services.yml `pki_policy:` can change live beside the Topology
 * (topology/pki-policy.ts); this file reads them from there.
 */
import { MeshplaneError } from '../errors.js';
import { PKI_POLICY_BOUNDS, PKI_POLICY_DEFAULTS } from '../topology/index.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

export const VALIDITY = {
  /** Leaf certificates (client and server) without a lifetime of their own or in pki_policy. */
  leafDefaultDays: PKI_POLICY_DEFAULTS.leaf_lifetime_ms / DAY_MS,
  leafMinMs: PKI_POLICY_BOUNDS.leaf_lifetime_ms.min,
  leafMaxDays: PKI_POLICY_BOUNDS.leaf_lifetime_ms.max / DAY_MS,
  /** Reissue once less than this fraction of a leaf's life is left. */
  renewFraction: 1 / 3,
  /** CA certificate. */
  caDays: 3652,
  /** CRL: nextUpdate - thisUpdate without pki_policy.crl_lifetime; re-signed by init, issue and serve at half of it, and by revoke. */
  crlDays: PKI_POLICY_DEFAULTS.crl_lifetime_ms / DAY_MS,
  /** notBefore is set this far in the past to tolerate clock skew between hosts. */
  backdateMs: 5 * 60_000,
  /** A certificate whose notBefore is at most this far in the future is still accepted (install, renewal): the controller's clock may run ahead. */
  futureToleranceMs: HOUR_MS,
} as const;

export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export function daysToMs(days: number): number {
  return days * DAY_MS;
}

/** Validity of a leaf signed at `now` for `lifetimeMs` (default 90 days). */
export function leafValidity(now: Date, lifetimeMs: number = daysToMs(VALIDITY.leafDefaultDays)): Validity {
  if (!Number.isFinite(lifetimeMs) || lifetimeMs < VALIDITY.leafMinMs || lifetimeMs > daysToMs(VALIDITY.leafMaxDays)) {
    throw new MeshplaneError(
      'PKI_ERR_VALIDITY',
      `certificate lifetime ${formatDuration(lifetimeMs)} is outside the allowed range (expected 1 hour to ${VALIDITY.leafMaxDays} days)`,
    );
  }
  return { notBefore: new Date(now.getTime() - VALIDITY.backdateMs), notAfter: new Date(now.getTime() + lifetimeMs) };
}

/** Parses `--lifetime` values: 90d, 12h, 30m. */
export function parseLifetime(text: string): number {
  const match = /^(\d+)(d|h|m)$/.exec(text.trim());
  if (match === null) throw new MeshplaneError('PKI_ERR_VALIDITY', `cannot read lifetime "${text}" (expected a number with d, h or m, such as 90d)`);
  const unit = match[2] === 'd' ? DAY_MS : match[2] === 'h' ? HOUR_MS : 60_000;
  return Number(match[1]) * unit;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (Math.abs(ms) >= DAY_MS) return `${(ms / DAY_MS).toFixed(1).replace(/\.0$/, '')}d`;
  if (Math.abs(ms) >= HOUR_MS) return `${(ms / HOUR_MS).toFixed(1).replace(/\.0$/, '')}h`;
  return `${Math.round(ms / 60_000)}m`;
}

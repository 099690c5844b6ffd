/**
 * The mesh's PKI lifetimes (services.yml `pki_policy:`, the Topology's
 * `pki`): defaults, bounds and the one rule between them, in one place,
 * because three parts need them: config checks the input, validate.ts the
 * Topology, and the PKI decides every lifetime from them.
 */
import type { TopologyPkiPolicy } from './types.js';

const SECOND_MS = 1000;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** What a Topology without `pki` means: today's lifetimes. */
export const PKI_POLICY_DEFAULTS: TopologyPkiPolicy = {
  leaf_lifetime_ms: 90 * DAY_MS,
  crl_lifetime_ms: 7 * DAY_MS,
  crl_refresh_ms: HOUR_MS,
};

/** Inclusive bounds, in ms. Leaf bounds are the PKI's own (validity.ts). */
export const PKI_POLICY_BOUNDS: Readonly<Record<keyof TopologyPkiPolicy, { readonly min: number; readonly max: number }>> = {
  leaf_lifetime_ms: { min: HOUR_MS, max: 397 * DAY_MS },
  crl_lifetime_ms: { min: HOUR_MS, max: 365 * DAY_MS },
  // Short refreshes are for tests and labs: a fleet of N hosts fetches N/crl_refresh times a second.
  crl_refresh_ms: { min: SECOND_MS, max: 365 * DAY_MS },
};

/**
 * The CA re-signs its CRL once half of crl_lifetime has passed, so a fetched
 * CRL has more than half of it left; a host that last fetched crl_refresh ago
 * holds one with more than crl_lifetime/2 - crl_refresh left. Refreshing at
 * most every sixth of the lifetime keeps that above two refreshes: a host
 * that misses two fetches in a row still holds a valid CRL.
 */
const CRL_REFRESH_DIVISOR = 6;

/** The longest crl_refresh that `crlLifetimeMs` allows. */
export function maxCrlRefreshMs(crlLifetimeMs: number): number {
  return Math.floor(crlLifetimeMs / CRL_REFRESH_DIVISOR);
}

/** The policy in force: the Topology's, or the defaults when it has none. */
export function pkiPolicy(topology: { readonly pki?: TopologyPkiPolicy }): TopologyPkiPolicy {
  return topology.pki ?? PKI_POLICY_DEFAULTS;
}

/** `24h`, `7d`, `90m`, `30s`: how lifetimes are written in services.yml; undefined when it is not one. */
export function parsePolicyDuration(text: string): number | undefined {
  const match = /^(\d+)(d|h|m|s)$/.exec(text);
  if (match === null) return undefined;
  const unit = match[2] === 'd' ? DAY_MS : match[2] === 'h' ? HOUR_MS : match[2] === 'm' ? 60_000 : SECOND_MS;
  return Number(match[1]) * unit;
}

/** The largest whole unit: 2d, 36h, 90m, 45s (what operators write, for messages). */
export function formatPolicyDuration(ms: number): string {
  for (const [unit, size] of [['d', DAY_MS], ['h', HOUR_MS], ['m', 60_000]] as const) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return ms % SECOND_MS === 0 ? `${ms / SECOND_MS}s` : `${ms}ms`;
}

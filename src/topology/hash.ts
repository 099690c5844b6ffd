/**
 * Fast, portable hashing for rendezvous scheduling. Pure 32-bit integer
 * arithmetic (Math.imul), so every machine and Node version computes the same
 * placement. A (service, host) score combines two precomputed 32-bit hashes
 * per name into a 53-bit number, so ties are practically impossible.
 */

/** FNV-1a over the UTF-16 code units of `text`, seeded. */
function hash32(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

/** MurmurHash3's finalizer: every input bit flips about half the output bits. */
function fmix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Two independent 32-bit hashes of one name. */
export interface NameHash {
  readonly a: number;
  readonly b: number;
}

export function nameHash(name: string, purpose: string): NameHash {
  return { a: hash32(`${purpose}\0${name}`, 0x3c6ef372), b: hash32(`${purpose}\0${name}`, 0x1b873593) };
}

/** Rendezvous weight of a host for a service (their name hashes' halves): higher wins. */
export function scoreParts(serviceA: number, serviceB: number, hostA: number, hostB: number): number {
  const high = fmix32(Math.imul(serviceA ^ hostA, 0x9e3779b1) ^ hostB);
  const low = fmix32(Math.imul(serviceB ^ hostB, 0x85ebca77) ^ hostA);
  return high * 0x200000 + (low >>> 11);
}

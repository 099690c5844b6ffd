/**
 * The P-256 signature check (src/pki/p256.ts): the native addon that
 * `npm install` builds and the node:crypto path must give the same answer
 * on good, forged and malformed input, and the native one must be there
 * (this machine has a compiler: a missing addon is a broken install).
 */
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadNativeP256, verifyWithNodeCrypto } from '../../src/pki/testing.js';
import { REPO_ROOT, run } from '../support/run.js';

const loaded = loadNativeP256();
const native = 'verify' in loaded ? loaded.verify : undefined;

/** A key's raw uncompressed point (the last 65 bytes of its SPKI). */
function pointOf(key: ReturnType<typeof generateKeyPairSync>['publicKey']): Buffer {
  const spki = key.export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 65);
}

/** Both checks' answers, which must agree. */
function both(point: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (native === undefined) throw new Error(`the native P-256 check is ${'reason' in loaded ? loaded.reason : '?'}`);
  const viaNode = verifyWithNodeCrypto(point, message, signature);
  expect(native(point, message, signature), `native and node:crypto disagree (node says ${viaNode})`).toBe(viaNode);
  return viaNode;
}

describe('the P-256 signature check', () => {
  it('is built: npm install compiled native/p256.c', () => {
    expect('reason' in loaded ? loaded.reason : 'loaded').toBe('loaded');
  });

  it('accepts every good signature and refuses every forgery, as node:crypto does', () => {
    for (let i = 0; i < 100; i++) {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const message = randomBytes(1 + (i % 300));
      const signature = sign('sha256', message, privateKey);
      const point = pointOf(publicKey);
      expect(both(point, message, signature)).toBe(true);
      const changed = Buffer.from(message);
      changed[i % changed.length] = (changed[i % changed.length] ?? 0) ^ 1;
      expect(both(point, changed, signature)).toBe(false);
      expect(both(pointOf(other.publicKey), message, signature)).toBe(false);
      // A bit of r or of s (the last byte of the DER is the end of s).
      for (const at of [5, signature.length - 1]) {
        const forged = Buffer.from(signature);
        forged[at] = (forged[at] ?? 0) ^ 1;
        expect(both(point, message, forged)).toBe(false);
      }
    }
  });

  it('answers false, never throws, for malformed points and signatures', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const message = Buffer.from('meshplane');
    const signature = sign('sha256', message, privateKey);
    const point = pointOf(publicKey);
    const offCurve = Buffer.from(point);
    offCurve[64] = (offCurve[64] ?? 0) ^ 1;
    const compressed = Buffer.concat([Buffer.of(2 + ((point[64] ?? 0) & 1)), point.subarray(1, 33)]);
    const cases: Array<[string, Uint8Array, Uint8Array]> = [
      ['a point off the curve', offCurve, signature],
      ['a compressed point', compressed, signature],
      ['a short point', point.subarray(0, 64), signature],
      ['an empty point', new Uint8Array(0), signature],
      ['an empty signature', point, new Uint8Array(0)],
      ['a truncated signature', point, signature.subarray(0, signature.length - 1)],
      ['a trailing byte', point, Buffer.concat([signature, Buffer.of(0)])],
      // SEQUENCE with a long-form length: BER, not DER.
      ['a signature in BER', point, Buffer.concat([Buffer.of(0x30, 0x81, signature[1] ?? 0), signature.subarray(2)])],
      ['r = 0, s = 0', point, Buffer.of(0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00)],
      ['random bytes', point, randomBytes(72)],
      ['a huge signature', point, randomBytes(4096)],
    ];
    for (const [what, p, s] of cases) expect(both(p, message, s), what).toBe(false);
  });

  it('throws a TypeError for arguments that are not bytes', () => {
    expect(native).toBeDefined();
    expect(() => (native as unknown as (...a: unknown[]) => boolean)('point', Buffer.alloc(1), Buffer.alloc(1))).toThrow(TypeError);
    expect(() => (native as unknown as (...a: unknown[]) => boolean)(Buffer.alloc(65))).toThrow(TypeError);
  });

  it('says which one is in use; MESHPLANE_NATIVE=0 chooses node:crypto', () => {
    const script = `import('${REPO_ROOT}dist/pki/p256.js').then((m) => console.log(JSON.stringify(m.p256Backend())))`;
    const on = run(process.execPath, ['-e', script]);
    expect(JSON.parse(on.stdout)).toMatchObject({ native: true });
    const off = run(process.execPath, ['-e', script], { env: { ...process.env, MESHPLANE_NATIVE: '0' } });
    expect(JSON.parse(off.stdout)).toEqual({ native: false, detail: 'node:crypto (MESHPLANE_NATIVE=0)' });
  });
});

import { describe, expect, it } from 'vitest';
import { isLoopback, networkContains, parseIp, parseNetwork } from '../src/lib/ip.js';

describe('IP helpers', () => {
  it('canonicalizes IPv6 text the RFC 5952 way', () => {
    expect(parseIp('2001:DB8:0:0:0:0:0:1')?.text).toBe('2001:db8::1');
    expect(parseIp('::ffff:192.0.2.1')?.text).toBe('::ffff:c000:201');
    expect(parseIp('fe80::1:0:0:1')?.text).toBe('fe80::1:0:0:1');
    expect(parseIp('::')?.text).toBe('::');
  });

  it('rejects things that are not addresses', () => {
    expect(parseIp('10.0.0.256')).toBeUndefined();
    expect(parseIp('host1')).toBeUndefined();
    expect(parseIp('fe80::1%eth0')).toBeUndefined();
    expect(parseNetwork('10.0.0.0/33')).toBeUndefined();
    expect(parseNetwork('10.0.0.0')).toBeUndefined();
  });

  it('tests network membership for both families', () => {
    const v4 = parseNetwork('100.64.0.9/24');
    expect(v4?.text).toBe('100.64.0.0/24');
    expect(networkContains(v4!, parseIp('100.64.0.200')!)).toBe(true);
    expect(networkContains(v4!, parseIp('100.64.1.1')!)).toBe(false);
    const v6 = parseNetwork('fd00:1::/64');
    expect(networkContains(v6!, parseIp('fd00:1::5')!)).toBe(true);
    expect(networkContains(v6!, parseIp('100.64.0.1')!)).toBe(false);
  });

  it('knows loopback addresses', () => {
    expect(isLoopback(parseIp('127.0.1.5')!)).toBe(true);
    expect(isLoopback(parseIp('::1')!)).toBe(true);
    expect(isLoopback(parseIp('128.0.0.1')!)).toBe(false);
  });
});

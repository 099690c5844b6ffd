/**
 * The TCP slot policy and the log sampler on their own: who is pushed out at
 * each cap, and how many lines a flood of events turns into.
 */
import { describe, expect, it } from 'vitest';
import { TcpSlots } from '../src/dns/testing.js';
import { sourceKey } from '../src/lib/ip.js';
import pino from 'pino';
import { LogSampler, SUPPRESSED_MESSAGE } from '../src/lib/log-sampler.js';

interface Slot {
  readonly name: string;
  readonly source: string;
  waitStart: number;
  busy: boolean;
}

const slot = (name: string, source: string, waitStart: number, busy = false): Slot => ({ name, source, waitStart, busy });

describe('TCP slots', () => {
  it('admits freely under both caps', () => {
    const slots = new TcpSlots<Slot>(4, 2);
    slots.add(slot('a', 'x', 1));
    expect(slots.admit('x')).toEqual({ admit: true, evict: null, reason: null });
  });

  it('at the per-source cap pushes out that source\'s oldest waiting connection, never another source\'s', () => {
    const slots = new TcpSlots<Slot>(10, 2);
    slots.add(slot('other', 'y', 0));
    const old = slot('old', 'x', 1);
    slots.add(old);
    slots.add(slot('new', 'x', 5));
    expect(slots.admit('x')).toEqual({ admit: true, evict: old, reason: 'evicted_source' });
    // A busy one (forwarding) stays; with nothing else to evict the newcomer is refused.
    old.busy = true;
    expect(slots.admit('x')).toMatchObject({ evict: { name: 'new' } });
    for (const s of slots.all()) s.busy = true;
    expect(slots.admit('x')).toEqual({ admit: false });
  });

  it('at the global cap takes from the biggest holder, so a source with fewer connections keeps its own', () => {
    const slots = new TcpSlots<Slot>(4, 10);
    const lone = slot('lone', 'legit', 0); // the oldest of all, but its source holds one connection
    slots.add(lone);
    slots.add(slot('f1', 'flood', 3));
    slots.add(slot('f2', 'flood', 2));
    slots.add(slot('f3', 'flood', 4));
    expect(slots.admit('newcomer')).toMatchObject({ admit: true, evict: { name: 'f2' }, reason: 'evicted_global' });
    expect(slots.size).toBe(4);
    slots.delete(lone);
    slots.delete(lone);
    expect(slots.size).toBe(3);
    expect(slots.countOf('legit')).toBe(0);
  });

  it('keys IPv4 by address (IPv4-mapped unmapped) and IPv6 by /64', () => {
    expect(sourceKey('192.0.2.1')).toBe('192.0.2.1');
    expect(sourceKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(sourceKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8:1:2:bbbb::9')).toBe(sourceKey('2001:db8:1:2:aaaa::1'));
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
  });
});

describe('log sampler', () => {
  it('bounds the keys it tracks: a flood of distinct reasons shares one window', () => {
    const lines: Record<string, unknown>[] = [];
    const sink = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
    const sampler = new LogSampler(pino({ level: 'debug' }, sink), { burst: 1, intervalMs: 60_000, maxKeys: 2 });
    for (const reason of ['a', 'b', 'c', 'd', 'e']) sampler.log('warn', reason, { reason }, 'DNS TCP connection closed by a limit');
    sampler.close();
    // a and b have windows of their own; c, d and e share the overflow window: one written, two suppressed.
    expect(lines.filter((l) => l['msg'] === 'DNS TCP connection closed by a limit').map((l) => l['reason'])).toEqual(['a', 'b', 'c']);
    expect(lines.filter((l) => l['msg'] === SUPPRESSED_MESSAGE)).toEqual([expect.objectContaining({ reason: '(other)', suppressed: 2 })]);
  });
});

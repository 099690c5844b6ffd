/** The pieces of the gateway's limits that need no process: the descriptor budget, sources, the log sampler. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { connectionBudget, openFileLimit, perSourceCap } from '../src/gateway/testing.js';
import { sourceKey } from '../src/lib/ip.js';
import { LogSampler, SUPPRESSED_MESSAGE } from '../src/lib/log-sampler.js';

describe('descriptor budget', () => {
  it('reads the soft open-file limit from /proc/self/limits', () => {
    expect(openFileLimit('Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 4096                 files\n')).toBe(1024);
    expect(openFileLimit('Max open files            unlimited            unlimited            files\n')).toBeNull();
    expect(openFileLimit()).toBeGreaterThan(0);
  });

  it('keeps an eighth back and splits the rest, so the caps never add up to the limit', () => {
    const budget = connectionBudget(1024, 2);
    expect(budget).toEqual({ openFiles: 1024, reserve: 128, admin: 56, registration: 224, front: 308 });
    expect(budget.admin + budget.registration + 2 * budget.front + budget.reserve).toBeLessThanOrEqual(1024);
    expect(connectionBudget(65_536, 4)).toMatchObject({ admin: 64, registration: 14_336, front: 10_736 });
    expect(connectionBudget(1024, 2, { maxConnections: 50, maxAgentConnections: 7 })).toMatchObject({ front: 50, registration: 7, admin: 56 });
    expect(perSourceCap(308, {})).toBe(30);
    expect(perSourceCap(20, {})).toBe(8);
    expect(perSourceCap(20, { maxConnectionsPerSource: 100 })).toBe(20);
  });

  it('counts IPv4 (also mapped) by address and IPv6 by /64', () => {
    expect(sourceKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(sourceKey('2001:db8:1:2:aaaa::1')).toBe(sourceKey('2001:db8:1:2:bbbb::2'));
    expect(sourceKey('2001:db8:1:2::1')).not.toBe(sourceKey('2001:db8:1:3::1'));
  });
});

describe('log sampler', () => {
  it('writes the first N lines per message and reason per interval, then one summary of the rest', () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    const sampler = new LogSampler(pino({ level: 'info' }, sink), { burst: 3, intervalMs: 60_000 });
    for (let i = 0; i < 100; i++) sampler.log('info', 'no_route', { i }, 'client connection refused');
    sampler.log('info', 'timeout', {}, 'client connection refused');
    sampler.flush();
    sampler.log('info', 'no_route', { i: 100 }, 'client connection refused');
    sampler.close();
    expect(lines.filter((l) => l['msg'] === 'client connection refused').map((l) => l['i'] ?? 'timeout')).toEqual([0, 1, 2, 'timeout', 100]);
    expect(lines.filter((l) => l['msg'] === SUPPRESSED_MESSAGE)).toEqual([expect.objectContaining({ event: 'client connection refused', reason: 'no_route', suppressed: 97, interval_ms: 60_000 })]);
  });
});

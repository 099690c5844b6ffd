/**
 * The byte-level pieces of the gateway and agent: reading SNI from real
 * ClientHellos (captured from openssl and curl, then re-split into many
 * records and fed byte by byte), and PROXY protocol headers.
 */
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { proxyHeader } from '../src/agent/testing.js';
import { readClientHello, readRequestHead, unrecognizedNameAlert } from '../src/gateway/testing.js';
import { runAsync } from './support/dns.js';

/** The first bytes a TLS client sends to a listener that never answers. */
async function captureHello(client: (port: number) => Promise<unknown>): Promise<Buffer> {
  const server = createServer();
  const captured = new Promise<Buffer>((resolve) => {
    server.on('connection', (socket) => {
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        const all = Buffer.concat(chunks);
        if (readClientHello(all).kind !== 'incomplete') {
          socket.destroy();
          resolve(all);
        }
      });
      socket.on('error', () => undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const running = client(port);
  const hello = await captured;
  server.close();
  await running;
  return hello;
}

/** The same handshake bytes re-framed into TLS records of `size` bytes each. */
function reframe(hello: Buffer, size: number): Buffer {
  const body = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const records: Buffer[] = [];
  for (let at = 0; at < body.length; at += size) {
    const part = body.subarray(at, at + size);
    records.push(Buffer.from([22, 3, 1, part.length >> 8, part.length & 0xff]), part);
  }
  return Buffer.concat(records);
}

describe('SNI from a ClientHello', () => {
  it('reads the server name from openssl s_client and curl hellos', async () => {
    const openssl = await captureHello((port) => runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'Web.Mesh.Internal'], 5000));
    expect(readClientHello(openssl)).toEqual({ kind: 'hello', serverName: 'web.mesh.internal', version: 0x0303 });
    const curl = await captureHello((port) => runAsync('curl', ['-sk', '--max-time', '3', '--resolve', `site.example.com:${port}:127.0.0.1`, `https://site.example.com:${port}/`], 5000));
    expect(readClientHello(curl)).toEqual({ kind: 'hello', serverName: 'site.example.com', version: 0x0303 });
  });

  it('reassembles a hello split over many records and fed a byte at a time', async () => {
    const hello = await captureHello((port) => runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'split.example.com'], 5000));
    const split = reframe(hello, 37);
    for (let cut = 0; cut < split.length; cut++) expect(readClientHello(split.subarray(0, cut)).kind).toBe('incomplete');
    expect(readClientHello(split)).toEqual({ kind: 'hello', serverName: 'split.example.com', version: 0x0303 });
  });

  it('reports hellos without SNI, non-TLS bytes and oversized hellos', async () => {
    const noSni = await captureHello((port) => runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-noservername'], 5000));
    expect(readClientHello(noSni)).toEqual({ kind: 'hello', serverName: null, version: 0x0303 });
    expect(readClientHello(Buffer.from('GET / HTTP/1.1\r\n')).kind).toBe('invalid');
    expect(readClientHello(Buffer.from([22, 3, 1, 0x40, 0, 1, 0x01, 0x00, 0x00]))).toMatchObject({ kind: 'invalid', reason: expect.stringContaining('cap') as string });
  });
});

describe('unrecognized_name alert', () => {
  it('is a fatal alert 112 whose record version is the hello legacy_version, at most 0x0303', async () => {
    // A TLS 1.0-only client offers 0x0301 and is answered in it; TLS 1.2/1.3 clients get 0x0303.
    const old = await captureHello((port) => runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'old.example', '-tls1', '-cipher', 'DEFAULT@SECLEVEL=0'], 5000));
    const hello = readClientHello(old);
    expect(hello).toEqual({ kind: 'hello', serverName: 'old.example', version: 0x0301 });
    expect(unrecognizedNameAlert(0x0301).toString('hex')).toBe('15030100020270');
    expect(unrecognizedNameAlert(0x0303).toString('hex')).toBe('15030300020270');
    expect(unrecognizedNameAlert(0x0304).toString('hex')).toBe('15030300020270');
  });
});

describe('PROXY protocol headers', () => {
  const v4 = { sourceAddress: '198.18.0.7', sourcePort: 51000, destinationAddress: '198.18.0.1', destinationPort: 443 };
  const v6 = { sourceAddress: '2001:db8::7', sourcePort: 51000, destinationAddress: '::1', destinationPort: 8443 };

  it('writes v1 lines for IPv4, IPv6 and unknown peers', () => {
    expect(proxyHeader('v1', v4).toString()).toBe('PROXY TCP4 198.18.0.7 198.18.0.1 51000 443\r\n');
    expect(proxyHeader('v1', v6).toString()).toBe('PROXY TCP6 2001:db8::7 ::1 51000 8443\r\n');
    expect(proxyHeader('v1', { ...v4, sourceAddress: '::ffff:198.18.0.7', destinationAddress: '::ffff:198.18.0.1' }).toString()).toBe('PROXY TCP4 198.18.0.7 198.18.0.1 51000 443\r\n');
    expect(proxyHeader('v1', null).toString()).toBe('PROXY UNKNOWN\r\n');
  });

  it('writes v2 binary headers', () => {
    expect(proxyHeader('v2', v4).toString('hex')).toBe('0d0a0d0a000d0a515549540a' + '2111000c' + 'c6120007' + 'c6120001' + 'c738' + '01bb');
    const six = proxyHeader('v2', v6);
    expect(six.subarray(12, 16).toString('hex')).toBe('21210024');
    expect(six.subarray(16, 32).toString('hex')).toBe('20010db8000000000000000000000007');
    expect(six.subarray(32, 48).toString('hex')).toBe('00000000000000000000000000000001');
    expect(proxyHeader('v2', null).subarray(12).toString('hex')).toBe('20000000');
  });
});

describe('HTTP request heads', () => {
  it('routes plain requests by Host and CONNECT by its authority', () => {
    const get = Buffer.from('GET /index.html HTTP/1.1\r\nHost: WWW.Example.com:10080\r\nAccept: */*\r\n\r\nbody');
    expect(readRequestHead(get)).toEqual({ kind: 'request', method: 'GET', target: '/index.html', host: 'www.example.com', port: 10080, headLength: get.length - 4 });
    const connect = Buffer.from('CONNECT web.mesh.internal:443 HTTP/1.1\r\nHost: web.mesh.internal:443\r\n\r\n\x16\x03\x01');
    expect(readRequestHead(connect)).toMatchObject({ kind: 'request', method: 'CONNECT', host: 'web.mesh.internal', port: 443, headLength: connect.length - 3 });
    expect(readRequestHead(Buffer.from('CONNECT [::1]:8443 HTTP/1.1\r\n\r\n'))).toMatchObject({ host: '::1', port: 8443 });
    expect(readRequestHead(Buffer.from('GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n'))).toMatchObject({ host: 'a.example' });
  });

  it('waits for the whole head, and refuses garbage, oversized heads and ambiguous Host', () => {
    expect(readRequestHead(Buffer.from('GET / HTTP/1.1\r\nHost: a'))).toEqual({ kind: 'incomplete' });
    expect(readRequestHead(Buffer.from([22, 3, 1, 2, 0, 1]))).toMatchObject({ kind: 'invalid' });
    expect(readRequestHead(Buffer.from(`GET / HTTP/1.1\r\nX: ${'a'.repeat(20_000)}`))).toMatchObject({ kind: 'invalid' });
    expect(readRequestHead(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'))).toMatchObject({ kind: 'invalid' });
    expect(readRequestHead(Buffer.from('CONNECT nowhere HTTP/1.1\r\n\r\n'))).toMatchObject({ kind: 'invalid' });
  });

  it('refuses a line ending other than CRLF as soon as it arrives, but not the tunnel bytes after a CONNECT head', () => {
    const bare = { kind: 'invalid', reason: 'line ending other than CRLF (bare LF or CR)' };
    expect(readRequestHead(Buffer.from('GET / HTTP/1.1\nHost: a\n\n'))).toEqual(bare);
    expect(readRequestHead(Buffer.from('GET / HTTP/1.1\n'))).toEqual(bare);
    expect(readRequestHead(Buffer.from('GET / HTTP/1.1\r\nX: 1\nHost: b\r\nHost: a\r\n\r\n'))).toEqual(bare);
    expect(readRequestHead(Buffer.from('GET / HTTP/1.1\r\nX: 1\rHost: b\r\n\r\n'))).toEqual(bare);
    // A CR at the end may be the start of a CRLF still on its way.
    expect(readRequestHead(Buffer.from('GET / HTTP/1.1\r'))).toEqual({ kind: 'incomplete' });
    expect(readRequestHead(Buffer.from('CONNECT a.example:443 HTTP/1.1\r\n\r\n\n\r\x16'))).toMatchObject({ kind: 'request', host: 'a.example' });
  });
});

/**
 * Reading just enough of an HTTP/1.x request head to route it: the method,
 * the target and the Host header. The head is capped and the caller times
 * it out; the bytes are replayed to the backend unchanged (plain HTTP), or
 * consumed (CONNECT, whose tunnel starts after the head).
 *
 * Lines must end in CRLF. A bare LF (or a CR before anything but LF) makes
 * the head invalid at once (HTTP 400): RFC 9112 2.2 lets a recipient accept
 * bare LF, but the head goes on to a backend unchanged, and a gateway and a
 * backend that disagree on where a line ends disagree on the Host.
 */

type HeadResult =
  | { readonly kind: 'incomplete' }
  | {
      readonly kind: 'request';
      readonly method: string;
      readonly target: string;
      /** Host header (or CONNECT authority) without the port, lowercased; null when absent. */
      readonly host: string | null;
      /** Port from CONNECT's authority or the Host header; null when none was given. */
      readonly port: number | null;
      /** Bytes of the head, up to and including the blank line. */
      readonly headLength: number;
    }
  | { readonly kind: 'invalid'; readonly reason: string };

const MAX_HEAD_BYTES = 16 * 1024;
const INCOMPLETE: HeadResult = { kind: 'incomplete' };
const BARE_LINE_ENDING: HeadResult = { kind: 'invalid', reason: 'line ending other than CRLF (bare LF or CR)' };
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export function readRequestHead(data: Buffer): HeadResult {
  const end = data.indexOf('\r\n\r\n', 0, 'latin1');
  if (end < 0) {
    if (data.length > MAX_HEAD_BYTES) return { kind: 'invalid', reason: `request head over ${MAX_HEAD_BYTES} bytes` };
    // Fail early on bytes that cannot start a request (a TLS hello on an HTTP port).
    const firstSpace = data.indexOf(0x20);
    const method = data.subarray(0, firstSpace < 0 ? Math.min(data.length, 32) : firstSpace).toString('latin1');
    if (method.length > 0 && !TOKEN.test(method)) return { kind: 'invalid', reason: 'not an HTTP request' };
    return bareLineEnding(data, data.length) ? BARE_LINE_ENDING : INCOMPLETE;
  }
  if (bareLineEnding(data, end + 4)) return BARE_LINE_ENDING;
  const lines = data.subarray(0, end).toString('latin1').split('\r\n');
  const [method = '', target = '', version = ''] = (lines[0] ?? '').split(' ');
  if (!TOKEN.test(method) || target === '' || !/^HTTP\/1\.[01]$/.test(version)) return { kind: 'invalid', reason: 'malformed request line' };
  let hostHeader: string | null = null;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return { kind: 'invalid', reason: 'malformed header line' };
    if (line.slice(0, colon).trim().toLowerCase() === 'host') {
      if (hostHeader !== null) return { kind: 'invalid', reason: 'several Host headers' };
      hostHeader = line.slice(colon + 1).trim();
    }
  }
  const authority = method === 'CONNECT' ? target : (absoluteAuthority(target) ?? hostHeader);
  const { host, port } = splitAuthority(authority);
  if (method === 'CONNECT' && (host === null || port === null)) return { kind: 'invalid', reason: 'CONNECT needs host:port' };
  return { kind: 'request', method, target, host, port, headLength: end + 4 };
}

/** Is there an LF without a CR before it, or a CR followed by anything but LF, in the first `limit` bytes? */
function bareLineEnding(data: Buffer, limit: number): boolean {
  for (let i = data.indexOf(0x0a); i >= 0 && i < limit; i = data.indexOf(0x0a, i + 1)) if (i === 0 || data[i - 1] !== 0x0d) return true;
  for (let i = data.indexOf(0x0d); i >= 0 && i < limit; i = data.indexOf(0x0d, i + 1)) if (i + 1 < data.length && data[i + 1] !== 0x0a) return true;
  return false;
}

/** "http://host:port/path" -> "host:port" (absolute-form targets, RFC 9112 3.2.2). */
function absoluteAuthority(target: string): string | null {
  const match = /^https?:\/\/([^/?#]+)/i.exec(target);
  return match === null ? null : match[1]!;
}

function splitAuthority(authority: string | null): { host: string | null; port: number | null } {
  if (authority === null || authority === '') return { host: null, port: null };
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(authority);
  if (bracketed !== null) return { host: bracketed[1]!.toLowerCase(), port: bracketed[2] === undefined ? null : Number(bracketed[2]) };
  const colon = authority.lastIndexOf(':');
  if (colon < 0) return { host: authority.toLowerCase().replace(/\.$/, ''), port: null };
  const port = Number(authority.slice(colon + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) return { host: null, port: null };
  return { host: authority.slice(0, colon).toLowerCase().replace(/\.$/, ''), port };
}

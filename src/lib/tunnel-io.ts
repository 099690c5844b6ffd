/**
 * What the gateway and the agent share about the tunnel: HTTP/2 settings
 * tuned so one tunnel is not capped by 64 KiB windows, the header names of
 * a tunnelled connection, and a two-way pipe that keeps half-close intact.
 */
import { constants as http2Constants } from 'node:http2';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** Stream and connection receive windows (each end governs what it receives). */
const TUNNEL_WINDOW = 8 * 1024 * 1024;
export const TUNNEL_SESSION_WINDOW = 32 * 1024 * 1024;

const TUNNEL_SETTINGS = {
  initialWindowSize: TUNNEL_WINDOW,
  maxFrameSize: 64 * 1024,
  maxConcurrentStreams: 100_000,
  enablePush: false,
} as const;

/** Session options for both ends: settings plus memory for many streams in flight (MB). */
export const TUNNEL_SESSION_OPTIONS = {
  settings: TUNNEL_SETTINGS,
  maxSessionMemory: 256,
  // Node's default (128 KiB window updates) lags on fast links; match the window.
  maxOutstandingPings: 4,
} as const;

/**
 * Cipher suites of the tunnel (TLS 1.3, then 1.2 with ECDSA keys), AES-128-GCM first: with AES-NI it costs
 * about a third less per byte than OpenSSL's default AES-256-GCM, and the
 * tunnel's bulk data is where a gateway spends its CPU.
 */
export const TUNNEL_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305';

/** Headers of a tunnelled connection (HTTP/2 CONNECT, RFC 9113 8.5). */
export const HEADER = {
  endpoint: 'x-meshplane-endpoint',
  clientAddress: 'x-meshplane-client-address',
  clientPort: 'x-meshplane-client-port',
  frontAddress: 'x-meshplane-front-address',
  frontPort: 'x-meshplane-front-port',
  /** On a CONNECT front: the service port the client asked for (the agent dials it when it is one of the service's). */
  backendPort: 'x-meshplane-backend-port',
  /** On a health-check request (GET): the endpoint whose check it is. */
  healthEndpoint: 'x-meshplane-health',
  /** On a health-check request: "1" when the backend speaks TLS (tls-mode endpoints). */
  healthTls: 'x-meshplane-health-tls',
} as const;

/** Host header of health checks, and the response header a backend may report its load in. */
export const HEALTH_HOST = 'iconia-healthcheck';
export const LOAD_HEADER = 'x-iconia-load';
/** How much of a failing check's body is kept as its reason. */
export const HEALTH_BODY_MAX_BYTES = 1024;

/** Path the gateway asks an agent for what it serves, right after the TLS handshake. */
export const REGISTRATION_PATH = '/.well-known/meshplane/agent';

/**
 * Path of the gateway's request (POST) that aborts tunnelled connections
 * whose clients went away: the body lists their stream ids (decimal,
 * comma-separated) and the agent resets those streams itself. The gateway
 * must not reset them: the agent is the HTTP/2 server, and nghttp2 ends a
 * server session that receives RST_STREAM faster than a token bucket allows
 * (burst 1000, 33/s: the CVE-2023-44487 "rapid reset" guard, which Node 20
 * cannot tune), so a burst of aborting clients would take the whole tunnel
 * down. RST_STREAM the server sends is not limited.
 */
export const ABORT_PATH = '/.well-known/meshplane/abort';
/** The most stream ids one abort request carries (about 10 bytes each). */
export const ABORT_MAX_IDS = 4096;
export const ABORT_MAX_BODY_BYTES = ABORT_MAX_IDS * 11;

export interface AgentHello {
  readonly agent_id: string;
  readonly host: string;
  readonly service: string;
  readonly credential: string;
  readonly version: string;
}

/**
 * How much a pipe lets queue on the side it writes to before it stops
 * reading the other side (per direction). Measured with bench:gateway: one
 * tunnelled stream moved 0.67-0.72x ssh -R's throughput when the pipe
 * paused at every write over the streams' 16 KiB high-water mark (bulk
 * reads come in 64 KiB, so every chunk stopped and restarted reading), and
 * 0.82-0.89x with 256 KiB or 1 MiB here. A stuck reader costs at most this
 * much per direction, well under the HTTP/2 stream window (TUNNEL_WINDOW)
 * that a tunnel allows in flight anyway.
 */
const PIPE_BUFFER_BYTES = 256 * 1024;

/** An error listener for tunnel streams and client sockets: they report nothing of their own, a reset just closes them. */
export function ignoreError(): void {}

/**
 * On a piped stream: how the pipe cuts it when the other side failed or
 * closed early (default: destroy(), which resets an HTTP/2 stream). The
 * gateway sets it on its tunnel streams, so that a client that went away
 * does not make the gateway send RST_STREAM (see ABORT_PATH).
 */
export const CUT = Symbol('meshplane.pipe.cut');
type Cuttable = Duplex & { [CUT]?: (stream: Duplex) => void };

function cut(stream: Duplex): void {
  const custom = (stream as Cuttable)[CUT];
  if (custom === undefined) stream.destroy();
  else custom(stream);
}

/** One direction of a pipe: what `from` reads is written to `to`. */
class PipeDirection {
  /** Within a turn of the event loop that already wrote once. */
  inTurn = false;
  /** `to` is corked until the turn ends. */
  corked = false;
  constructor(
    readonly from: Duplex,
    readonly to: Duplex,
    readonly pipe: Pipe,
  ) {}
}

class Pipe {
  firstError: Error | null = null;
  closed = 0;
  constructor(
    readonly a: Duplex,
    readonly b: Duplex,
    readonly onClose: ((error: Error | null) => void) | undefined,
  ) {}
}

/** On each piped stream: the direction it is the source of. */
const OUTBOUND = Symbol('meshplane.pipe.outbound');
type Piped = Duplex & { [OUTBOUND]: PipeDirection };

/**
 * Pipes a and b both ways with backpressure. FIN in one direction is passed
 * on with end() and the other direction keeps flowing (half-close). Nothing
 * is destroyed on the normal path: each side closes by itself once both of
 * its directions are done and its writes are flushed, so no tail of data is
 * cut off. When one side closes while the other can still send to it, that
 * other side is destroyed (nothing could reach the closed one); an error on
 * either destroys both (or cuts them their own way: CUT). `onClose` runs
 * once both have closed.
 *
 * The listeners are shared functions that find their state on the stream,
 * not closures per pipe: a gateway holds thousands of idle pipes, and
 * closures with their contexts were most of an idle pipe's memory.
 */
export function pipeBoth(a: Duplex, b: Duplex, onClose?: (error: Error | null) => void): void {
  const pipe = new Pipe(a, b, onClose);
  connect(new PipeDirection(a, b, pipe));
  connect(new PipeDirection(b, a, pipe));
}

function connect(direction: PipeDirection): void {
  const { from } = direction;
  (from as Piped)[OUTBOUND] = direction;
  from.on('data', onData);
  from.on('drain', onDrain);
  // A cut stream also "ends" (Node pushes EOF when it is reset): that is no FIN to pass on.
  from.on('end', onEnd);
  from.on('error', onError);
  from.on('close', onSourceClose);
  // A FIN that came while the caller held the stream paused has already been announced.
  if (from.readableEnded) direction.to.end();
}

/**
 * An HTTP/2 stream delivers a DATA frame in pieces, one per TLS record it
 * spans (8 KiB on average): writing each straight on would cost a syscall
 * per piece. The first piece of a turn of the event loop goes out at once
 * (a small request waits for nothing); the rest of that turn is corked and
 * leaves in one writev. (setImmediate, not nextTick: the tick queue runs
 * after every piece.)
 */
function onData(this: Piped, chunk: Buffer): void {
  const direction = this[OUTBOUND];
  const { to } = direction;
  if (!direction.inTurn) {
    direction.inTurn = true;
    setImmediate(endTurn, direction);
  } else if (!direction.corked) {
    direction.corked = true;
    to.cork();
  }
  to.write(chunk);
  // Backpressure at PIPE_BUFFER_BYTES, not at the 16 KiB high-water mark (see there). 'drain'
  // follows, since a queue this long has passed the mark.
  if (to.writableLength >= PIPE_BUFFER_BYTES) this.pause();
}

function endTurn(direction: PipeDirection): void {
  direction.inTurn = false;
  if (direction.corked) {
    direction.corked = false;
    direction.to.uncork();
  }
}

/** This stream takes writes again: let the other side read on. */
function onDrain(this: Piped): void {
  this[OUTBOUND].to.resume();
}

function onEnd(this: Piped): void {
  if (!wasCut(this)) this[OUTBOUND].to.end();
}

function onError(this: Piped, err: Error): void {
  const { pipe } = this[OUTBOUND];
  pipe.firstError ??= err;
  cut(pipe.a);
  cut(pipe.b);
}

function onSourceClose(this: Piped): void {
  const { to, pipe } = this[OUTBOUND];
  // Still readable: it can never deliver what it reads, so stop it. When
  // the tunnel stream was cut (reset with an error code, or its session
  // died), a TCP peer gets a reset rather than a FIN: a FIN would read
  // as "the other end finished", and a half-open client would wait for
  // a close that a FIN never brings.
  if (!to.readableEnded) {
    // (Not after a FIN: libuv cannot reset a socket that is shutting down.)
    if (wasCut(this) && to instanceof Socket && !to.writableEnded) to.resetAndDestroy();
    else cut(to);
  } else if (!to.writableEnded && (wasCut(this) || !this.readableEnded)) {
    // `to` already sent its FIN, and this side closed without one (cut, or gone before its end):
    // end() will never come, so `to` would sit half-closed for good (a backend connection in
    // CLOSE-WAIT on the agent, one per client that reset after the backend closed).
    if (to instanceof Socket) to.resetAndDestroy();
    else cut(to);
  }
  pipe.closed++;
  if (pipe.closed === 2) pipe.onClose?.(pipe.firstError);
}

/** An HTTP/2 stream that closed with RST_STREAM carrying an error code (CANCEL when its session died). */
function wasCut(stream: Duplex): boolean {
  const rstCode = (stream as Duplex & { rstCode?: number }).rstCode;
  return typeof rstCode === 'number' && rstCode !== http2Constants.NGHTTP2_NO_ERROR;
}

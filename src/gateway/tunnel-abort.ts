/**
 * Aborting tunnelled connections without RST_STREAM from the gateway.
 *
 * The agent is the HTTP/2 server of the tunnel, and nghttp2 (1.57 and
 * later) ends a server session with GOAWAY INTERNAL_ERROR once it receives
 * RST_STREAM faster than its token bucket allows (1000 at once, then 33 a
 * second: the "rapid reset" guard, CVE-2023-44487; Node 20 has no setting
 * for it). A burst of clients that reset their connections would make the
 * gateway reset as many streams and so take the whole tunnel down.
 *
 * So the gateway asks instead: the ids of the streams to abort go, batched
 * per turn of the event loop, in one POST to ABORT_PATH on the same
 * session, and the agent resets them itself (RST_STREAM a server sends is
 * not limited, nor is one a client receives) and closes their backend
 * connections. The request itself ends normally on both sides. An agent
 * that does not know the request (404) gets plain resets, as before.
 */
import { constants as http2Constants } from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import { ABORT_MAX_IDS, ABORT_PATH, ignoreError } from '../lib/tunnel-io.js';

class AbortBatch {
  streams: ClientHttp2Stream[] = [];
  scheduled = false;
  /** The agent answered 404: it resets nothing itself, so the gateway does. */
  unsupported = false;
}

const batches = new WeakMap<ClientHttp2Session, AbortBatch>();

/**
 * Has the agent reset `stream` (soon: the request leaves with the next turn
 * of the event loop). Whatever the stream still receives should be
 * discarded by the caller.
 */
export function abortTunnelStream(session: ClientHttp2Session, stream: ClientHttp2Stream): void {
  if (stream.closed || stream.destroyed) return;
  let batch = batches.get(session);
  // Not yet sent (no id), or no session to ask on: a reset costs the agent nothing here.
  if (stream.id === undefined || session.destroyed || session.closed || batch?.unsupported === true) {
    resetStream(stream);
    return;
  }
  if (batch === undefined) {
    batch = new AbortBatch();
    batches.set(session, batch);
  }
  batch.streams.push(stream);
  if (batch.streams.length >= ABORT_MAX_IDS) {
    flush(session, batch);
  } else if (!batch.scheduled) {
    batch.scheduled = true;
    setImmediate(flush, session, batch);
  }
}

function resetStream(stream: ClientHttp2Stream): void {
  if (!stream.closed && !stream.destroyed) stream.close(http2Constants.NGHTTP2_CANCEL);
}

function flush(session: ClientHttp2Session, batch: AbortBatch): void {
  batch.scheduled = false;
  const streams = batch.streams.filter((s) => !s.closed && !s.destroyed);
  batch.streams = [];
  if (streams.length === 0) return;
  if (session.destroyed || session.closed || batch.unsupported) {
    for (const stream of streams) resetStream(stream);
    return;
  }
  let request: ClientHttp2Stream;
  try {
    request = session.request({ ':method': 'POST', ':path': ABORT_PATH, 'content-type': 'text/plain' });
  } catch {
    for (const stream of streams) resetStream(stream);
    return;
  }
  let status = 0;
  request.on('error', ignoreError);
  request.on('response', (headers: IncomingHttpHeaders) => {
    status = Number(headers[':status']);
    if (status === 404) batch.unsupported = true;
  });
  // Read the (empty) answer to its end, so the request closes normally on both sides.
  request.resume();
  request.on('close', () => {
    if (status === 204) {
      // The agent has reset them (its resets may arrive just after its answer). Should one still be
      // open much later (the agent did not know it), reset it here: a rare one costs nothing.
      setTimeout(resetAll, ABORT_GRACE_MS, streams).unref();
    } else {
      // An agent that does not know the request (404), or the request failed: reset them here.
      resetAll(streams);
    }
  });
  request.end(streams.map((s) => s.id).join(','));
}

/** How long the agent has to reset the streams it was asked to abort. */
const ABORT_GRACE_MS = 10_000;

function resetAll(streams: readonly ClientHttp2Stream[]): void {
  for (const stream of streams) resetStream(stream);
}

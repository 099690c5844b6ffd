/**
 * Headless Chromium (Debian `chromium`) driven over the DevTools protocol
 * through `--remote-debugging-pipe`: commands go to its fd 3 and answers
 * come from its fd 4, each a JSON message ending in a NUL byte. No
 * WebSocket client needed (Node 20 has none built in). One page, kept open,
 * so a test can watch it change by itself.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

interface Message {
  id?: number;
  sessionId?: string;
  result?: Record<string, unknown>;
  error?: { message: string };
}

export interface Browser {
  /** Opens `url` in the page and waits for its load event. */
  open(url: string): Promise<void>;
  /** Evaluates an expression in the page and returns its value (JSON-serializable). */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the whole page laid out `width` CSS pixels wide (scale 1), as tall as its content. */
  screenshot(width: number): Promise<Buffer>;
  close(): Promise<void>;
}

export async function launchChromium(userDataDir: string): Promise<Browser> {
  const child: ChildProcess = spawn(
    'chromium',
    ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-extensions', '--disable-dev-shm-usage', '--remote-debugging-pipe', `--user-data-dir=${userDataDir}`, 'about:blank'],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const input = child.stdio[3] as Writable;
  const output = child.stdio[4] as Readable;
  input.on('error', () => undefined);
  const pending = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  const events: { method: string; sessionId?: string }[] = [];
  const eventWaiters: { method: string; resolve: () => void }[] = [];
  let buffered = '';
  output.setEncoding('utf8');
  output.on('data', (chunk: string) => {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf('\0')) >= 0) {
      const message = JSON.parse(buffered.slice(0, end)) as Message & { method?: string };
      buffered = buffered.slice(end + 1);
      if (message.id !== undefined) {
        const waiter = pending.get(message.id);
        pending.delete(message.id);
        if (message.error !== undefined) waiter?.reject(new Error(message.error.message));
        else waiter?.resolve(message);
      } else if (message.method !== undefined) {
        events.push({ method: message.method });
        for (const w of eventWaiters.filter((x) => x.method === message.method)) {
          eventWaiters.splice(eventWaiters.indexOf(w), 1);
          w.resolve();
        }
      }
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let nextId = 0;
  const send = (method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Message> =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve, reject });
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`chromium did not answer ${method} within 30 s\n${stderr.slice(-2000)}`));
      }, 30_000);
      pending.set(id, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      input.write(`${JSON.stringify({ id, method, params, ...(sessionId === undefined ? {} : { sessionId }) })}\0`);
    });
  const nextEvent = (method: string): Promise<void> => new Promise((resolve) => eventWaiters.push({ method, resolve }));

  const targets = (await send('Target.getTargets')).result as { targetInfos: { targetId: string; type: string }[] };
  const page = targets.targetInfos.find((t) => t.type === 'page');
  const targetId = page?.targetId ?? ((await send('Target.createTarget', { url: 'about:blank' })).result as { targetId: string }).targetId;
  const sessionId = ((await send('Target.attachToTarget', { targetId, flatten: true })).result as { sessionId: string }).sessionId;
  await send('Page.enable', {}, sessionId);
  await send('Runtime.enable', {}, sessionId);

  return {
    async open(url) {
      const loaded = nextEvent('Page.loadEventFired');
      const navigated = (await send('Page.navigate', { url }, sessionId)).result as { errorText?: string };
      if (navigated.errorText !== undefined) throw new Error(`chromium could not open ${url}: ${navigated.errorText}`);
      await loaded;
    },
    async evaluate<T>(expression: string) {
      const answer = (await send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, sessionId)).result as { result: { value?: T }; exceptionDetails?: { text: string } };
      if (answer.exceptionDetails !== undefined) throw new Error(`in the page: ${answer.exceptionDetails.text}`);
      return answer.result.value as T;
    },
    async screenshot(width) {
      const metrics = (height: number): Promise<Message> => send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false }, sessionId);
      await metrics(100); // small, so that the page's scrollHeight is its content's
      const answer = (await send('Runtime.evaluate', { expression: 'Math.ceil(document.documentElement.scrollHeight)', returnByValue: true }, sessionId)).result as { result: { value: number } };
      const height = Math.max(200, answer.result.value);
      await metrics(height);
      const shot = (await send('Page.captureScreenshot', { format: 'png', clip: { x: 0, y: 0, width, height, scale: 1 } }, sessionId)).result as { data: string };
      return Buffer.from(shot.data, 'base64');
    },
    async close() {
      try {
        await Promise.race([send('Browser.close'), new Promise((r) => setTimeout(r, 2000))]);
      } catch {
        // already gone
      }
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

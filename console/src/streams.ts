// Server-Sent Events with a bearer token and resume: the browser's EventSource cannot send
// headers, so @microsoft/fetch-event-source does the reading. It sends `Last-Event-ID` itself
// when it reconnects; the server ends every stream shortly before its function's time limit,
// and the console reconnects at once, so a stream is followed without gaps.
import { fetchEventSource } from "@microsoft/fetch-event-source";
import { apiUrl } from "./config";

export interface Follow {
  path: string;
  token: string;
  onMessage: (id: string, event: string, data: string) => void;
  /** Connected (true) or waiting to reconnect (false). */
  onState?: (live: boolean) => void;
  /** A refusal that reconnecting cannot fix (401, 403, 404). */
  onRefused?: (status: number) => void;
  signal: AbortSignal;
}

/** The server ended the stream (its time limit, or a task that has settled): reconnect after the hint. */
class Closed extends Error {}

class Refused extends Error {
  constructor(readonly status: number) {
    super(`refused with ${status}`);
  }
}

/** The wait before the next reconnect: the server's `retry:` hint, longer after each failure (at most 30 s). */
export function backoff(failures: number, hintMs = 2000): number {
  return Math.min(30_000, hintMs * 2 ** Math.max(0, failures - 1));
}

export function follow(f: Follow): Promise<void> {
  let failures = 0;
  return fetchEventSource(apiUrl(f.path), {
    headers: { Authorization: `Bearer ${f.token}` },
    signal: f.signal,
    openWhenHidden: true,
    onopen: (response) => {
      if (response.ok && response.headers.get("content-type")?.startsWith("text/event-stream")) {
        failures = 0;
        f.onState?.(true);
        return Promise.resolve();
      }
      if ([401, 403, 404].includes(response.status)) return Promise.reject(new Refused(response.status));
      return Promise.reject(new Error(`stream answered ${response.status}`));
    },
    onmessage: (message) => {
      if (message.event || message.data) f.onMessage(message.id, message.event, message.data);
    },
    onclose: () => {
      // Resume after the last id, once the server's `retry:` hint has passed.
      f.onState?.(false);
      throw new Closed("closed");
    },
    onerror: (error: unknown) => {
      if (error instanceof Refused) {
        f.onRefused?.(error.status);
        throw error;
      }
      f.onState?.(false);
      if (error instanceof Closed) return backoff(1);
      failures += 1;
      return backoff(failures);
    },
  });
}

/** A timeline with one more event: one per sequence, in sequence order. A resumed stream never
 * repeats an event, but a reconnect without Last-Event-ID (a page refresh) starts again. */
export function withEvent<E extends { sequence: number }>(seen: E[], event: E): E[] {
  if (seen.some((e) => e.sequence === event.sequence)) return seen;
  return [...seen, event].sort((a, b) => a.sequence - b.sequence);
}

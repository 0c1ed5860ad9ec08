// The local API, as the web app uses it: JSON over fetch (the HttpOnly
// cookie carries the token) and the numbered event stream over a WebSocket
// that resumes from the last number it saw.

/** Calls the API; resolves to the JSON answer, rejects with its error text. */
export async function call(method, path, body) {
  const init = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    throw new Error('not logged in: open the URL `backchannel run --ui` printed');
  }
  const text = await res.text();
  const data = text ? JSON.parse(text) : {};
  if (!res.ok) throw new Error(data.error || `${res.status}`);
  return data;
}

export const get = (path) => call('GET', path);
export const enc = encodeURIComponent;

/**
 * The event stream. `onLine(line)` gets every line in order; `onState(s)`
 * gets 'live', 'reconnecting' or 'reload'. After a `reload` line the
 * caller reads its state again; the stream resumes from that line's seq.
 */
export class EventStream {
  constructor(since, onLine, onState) {
    this.since = since;
    this.onLine = onLine;
    this.onState = onState;
    this.delay = 250;
    this.open();
  }

  open() {
    const url = new URL('/api/v1/events', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.since !== null) url.searchParams.set('since', String(this.since));
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 250;
      this.onState('live');
    };
    ws.onmessage = (msg) => {
      let line;
      try {
        line = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (typeof line.seq === 'number') this.since = line.seq;
      if (line.type === 'reload') {
        this.onState('reload');
        return;
      }
      this.onLine(line);
    };
    ws.onclose = () => {
      this.onState('reconnecting');
      setTimeout(() => this.open(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    };
  }
}

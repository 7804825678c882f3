// The signaling client (PROTOCOL.md §2) for browsers and Node: joins a room over a
// WebSocket, relays signals, pings at the server's heartbeat, and reconnects with backoff
// (rotating through several URLs) under the same peer id and resume secret. Everything
// the server sends is checked: it is untrusted like any peer. The WebSocket constructor
// is an argument (the browser's `WebSocket`; in Node the `ws` package's).

const OPEN = 1;
const MAX_NAME = 256; // the server's limit on peer ids and room names
const MAX_PEERS = 10_000; // peers a welcome may list (a room holds far fewer)
const MAX_SECRET = 128;
const AUTH_CLOSE = 4001;
const TAKEN_CLOSE = 4009;
/** The largest message taken from the server: a welcome lists the whole room (as in the
 * Python client: 999 ids of 256 astral characters fit). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** The largest message the server takes (`Limits.max_message_bytes`). */
export const MAX_SEND_BYTES = 64 * 1024;
/** Refusals every instance would give alike: trying another URL cannot help. */
const ROOM_REFUSALS = new Set(["peer-id-taken", "room-full", "bad-request", "bad-url"]);

const encoder = new TextEncoder();

/** A join the server refused, or no server reached: `reason` is the server's code or
 * `unreachable`, `timeout`, `closed`, `bad-welcome`, `bad-url`; `code` the close code. */
export class JoinError extends Error {
  constructor(message, reason = "refused", code = null) {
    super(message);
    this.name = "JoinError";
    this.reason = reason;
    this.code = code;
  }
  /** A token problem: no other URL nor a retry helps. */
  get auth() {
    return this.code === AUTH_CLOSE || this.reason.startsWith("auth");
  }
}

const validName = (value) => typeof value === "string" && value.length > 0 && value.length <= MAX_NAME;
const isObject = (value) => typeof value === "object" && value !== null && !Array.isArray(value);

export class SignalingClient {
  /**
   * @param {object} options
   * @param {string | string[]} options.url one URL or several (instances sharing rooms)
   * @param {string} options.room
   * @param {string | null} [options.peerId] null: the server picks one
   * @param {string | null} [options.token] a join token (§2.5)
   * @param {Function} [options.WebSocket] defaults to `globalThis.WebSocket`
   * @param {object} [options.webSocketOptions] third constructor argument (`ws` only)
   * @param {number} [options.openTimeout] seconds for connect + welcome (10)
   * @param {number} [options.maxBackoff] seconds between reconnect rounds at most (5)
   * @param {(error: unknown, type: string) => void} [options.onListenerError]
   */
  constructor(options) {
    const { url, room, peerId = null, token = null } = options ?? {};
    const urls = typeof url === "string" ? [url] : Array.isArray(url) ? [...url] : [];
    if (!urls.length || !urls.every((u) => typeof u === "string" && u)) {
      throw new TypeError("the signaling URL must be a string or a non-empty array of them");
    }
    if (!validName(room)) throw new TypeError("room: a string of 1-256 characters");
    if (peerId !== null && !validName(peerId)) throw new TypeError("peerId: null or 1-256 characters");
    if (token !== null && typeof token !== "string") throw new TypeError("token: null or a string");
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") throw new TypeError("no WebSocket constructor (pass options.WebSocket)");
    this.urls = urls;
    this.room = room;
    this.peerId = peerId;
    this.token = token;
    this.openTimeout = positive(options.openTimeout, 10);
    this.maxBackoff = positive(options.maxBackoff, 5);
    this.connected = false;
    /** @type {string | null} */
    this.resume = null;
    /** @type {number | null} */
    this.heartbeat = null;
    /** @type {Set<string>} the other peers in the room, as far as the server said */
    this.peers = new Set();
    this._WS = WS;
    this._wsOptions = options.webSocketOptions;
    this._onListenerError = typeof options.onListenerError === "function" ? options.onListenerError : null;
    this._index = 0;
    this._ws = null;
    this._pending = new Set(); // sockets still joining
    this._beat = null;
    this._retry = null;
    this._closing = false;
    this._joined = false;
    this._listeners = new Map();
  }

  /** The URL in use (or tried last). */
  get url() {
    return this.urls[this._index];
  }

  /** Listen to `peerJoined` ({peer}), `peerLeft` ({peer}), `signal` ({peer, data}),
   * `disconnected` ({code, reason}), `restored` ({peers}), `serverError` ({code, reason}),
   * `stopped` ({reason}). Returns a function that removes the listener. */
  on(type, listener) {
    if (typeof listener !== "function") throw new TypeError("listener: a function");
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  _emit(type, detail) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(detail);
      } catch (error) {
        // A listener's error must not break the client (nor escape into the socket).
        try {
          this._onListenerError?.(error, type);
        } catch {
          /* nothing more to do */
        }
      }
    }
  }

  /** Join the room; resolves to the other peers there. Rejects with a `JoinError`.
   * With several URLs each is tried once, in order, until one welcomes this peer. */
  async join() {
    if (this._joined || this._closing) throw new Error("join() is called once, before close()");
    this._joined = true;
    const peers = await this._joinAny();
    return peers;
  }

  async _joinAny() {
    const failures = [];
    for (let step = 0; step < this.urls.length; step++) {
      const index = (this._index + step) % this.urls.length;
      try {
        const ws = await this._connect(this.urls[index]);
        this._index = index;
        return this._adopt(ws);
      } catch (error) {
        if (!(error instanceof JoinError) || error.auth || ROOM_REFUSALS.has(error.reason) || this._closing) {
          throw error;
        }
        failures.push(error);
      }
    }
    if (failures.length === 1) throw failures[0];
    const last = failures[failures.length - 1];
    throw new JoinError(
      `no signaling server welcomed this peer: ${failures.map((e) => e.message).join("; ")}`,
      last.reason,
      last.code,
    );
  }

  /** Opens a socket, sends the join and waits for the welcome (validated). */
  _connect(url) {
    return new Promise((resolve, reject) => {
      if (this._closing) {
        reject(new JoinError("the client is closed", "closed"));
        return;
      }
      let ws;
      try {
        ws = this._wsOptions === undefined ? new this._WS(url) : new this._WS(url, undefined, this._wsOptions);
      } catch (error) {
        reject(new JoinError(`bad signaling URL ${JSON.stringify(url)}: ${error?.message ?? error}`, "bad-url"));
        return;
      }
      this._pending.add(ws);
      let settled = false;
      let refusal = null; // the error message preceding the server's close
      let grace = null;
      const finish = (error, welcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(grace);
        this._pending.delete(ws);
        ws.onopen = ws.onmessage = ws.onclose = null;
        // Not null: `ws` (Node) throws an 'error' nobody listens to, as closing a
        // socket still connecting makes one.
        ws.onerror = ignore;
        if (error) {
          safeClose(ws);
          reject(error);
        } else {
          resolve({ ws, welcome });
        }
      };
      const refused = (code) => {
        const name = refusal?.code ?? "closed";
        const text = refusal?.reason ?? "the signaling server closed the connection";
        const closeCode = Number.isInteger(code) && code >= 4000 && code < 5000 ? code : null;
        finish(new JoinError(`join refused: ${text}`, name, closeCode));
      };
      const timer = setTimeout(
        () => finish(new JoinError(`no welcome from ${url} within ${this.openTimeout} s`, "timeout")),
        this.openTimeout * 1000,
      );
      ws.onopen = () => {
        try {
          ws.send(
            JSON.stringify({ type: "join", room: this.room, peer_id: this.peerId, token: this.token, resume: this.resume }),
          );
        } catch (error) {
          finish(new JoinError(`cannot send the join: ${error?.message ?? error}`, "unreachable"));
        }
      };
      ws.onerror = () => {
        if (refusal === null) finish(new JoinError(`cannot reach the signaling server at ${url}`, "unreachable"));
      };
      ws.onclose = (event) => {
        if (refusal === null && event?.code === 1006) {
          finish(new JoinError(`cannot reach the signaling server at ${url}`, "unreachable"));
        } else {
          refused(event?.code);
        }
      };
      ws.onmessage = (event) => {
        if (settled || refusal !== null) return;
        const message = parse(event?.data);
        if (message?.type === "welcome") {
          const error = this._checkWelcome(message);
          if (error) finish(error);
          else finish(null, message);
        } else if (message?.type === "error") {
          // The server closes right after its error: its close code completes the picture.
          refusal = {
            code: typeof message.code === "string" ? message.code.slice(0, 64) : "refused",
            reason: typeof message.reason === "string" ? message.reason.slice(0, 300) : "refused",
          };
          grace = setTimeout(() => refused(null), 1000);
        } else {
          finish(new JoinError("no valid welcome from the signaling server", "bad-welcome"));
        }
      };
    });
  }

  /** Null when the welcome fits this client, else the JoinError. */
  _checkWelcome(message) {
    if (!validName(message.peer_id)) {
      return new JoinError("the signaling server's welcome has no valid peer id", "bad-welcome");
    }
    if (this.peerId !== null && message.peer_id !== this.peerId) {
      return new JoinError(
        `the signaling server welcomed this peer as ${JSON.stringify(message.peer_id.slice(0, 64))}, not ${JSON.stringify(this.peerId)}`,
        "bad-welcome",
      );
    }
    if (message.peers !== undefined && !Array.isArray(message.peers)) {
      return new JoinError("the signaling server's welcome lists no peers", "bad-welcome");
    }
    return null;
  }

  /** Takes a validated welcome in and makes its socket the live one; returns the peers. */
  _adopt({ ws, welcome }) {
    if (this._closing) {
      safeClose(ws);
      throw new JoinError("the client is closed", "closed");
    }
    this.peerId = welcome.peer_id;
    const listed = Array.isArray(welcome.peers) ? welcome.peers.slice(0, MAX_PEERS) : [];
    this.peers = new Set(listed.filter((p) => validName(p) && p !== this.peerId));
    const resume = welcome.resume;
    this.resume = typeof resume === "string" && resume.length <= MAX_SECRET ? resume : null;
    const beat = welcome.heartbeat;
    // A hostile server must not make this client spin, nor overflow a timer.
    this.heartbeat = typeof beat === "number" && beat > 0 ? Math.min(Math.max(beat, 0.2), 3600) : null;
    this._ws = ws;
    this.connected = true;
    ws.onmessage = (event) => {
      if (this._ws === ws) this._dispatch(event?.data);
    };
    ws.onerror = ignore;
    ws.onclose = (event) => {
      if (this._ws === ws) this._lost(event?.code ?? null, typeof event?.reason === "string" ? event.reason : "");
    };
    clearInterval(this._beat);
    if (this.heartbeat !== null) {
      this._beat = setInterval(() => {
        if (this._ws === ws && ws.readyState === OPEN) {
          try {
            ws.send('{"type":"ping"}');
          } catch {
            /* the close event follows */
          }
        }
      }, this.heartbeat * 1000);
    }
    return [...this.peers];
  }

  _dispatch(raw) {
    const message = parse(raw);
    if (message === null) return;
    const kind = message.type;
    if (kind === "peer-joined" || kind === "peer-left" || kind === "signal") {
      const peer = kind === "signal" ? message.from : message.peer_id;
      if (!validName(peer) || peer === this.peerId) return;
      if (kind === "peer-joined") {
        if (this.peers.size < MAX_PEERS) this.peers.add(peer);
        this._emit("peerJoined", { peer });
      } else if (kind === "peer-left") {
        this.peers.delete(peer);
        this._emit("peerLeft", { peer });
      } else if (isObject(message.data)) {
        this._emit("signal", { peer, data: message.data });
      }
    } else if (kind === "error") {
      this._emit("serverError", {
        code: typeof message.code === "string" ? message.code.slice(0, 64) : "unknown",
        reason: typeof message.reason === "string" ? message.reason.slice(0, 300) : "",
      });
    }
    // pong and anything unknown: ignored
  }

  _lost(code, reason) {
    clearInterval(this._beat);
    this._beat = null;
    this._ws = null;
    this.connected = false;
    if (this._closing) return;
    this._emit("disconnected", { code, reason: reason.slice(0, 300) });
    if (code === AUTH_CLOSE || code === TAKEN_CLOSE) {
      // Refused, or another session took this id over with the secret: fighting it is futile.
      this._emit("stopped", { reason: code === AUTH_CLOSE ? "auth" : "taken-over" });
      return;
    }
    this._reconnect();
  }

  /** Backoff loop: the next URL first (the one that dropped may be gone); the delay
   * doubles after each whole round of URLs. */
  _reconnect() {
    let delay = 0.2;
    const first = this._index;
    const attempt = () => {
      this._retry = null;
      if (this._closing) return;
      this._index = (this._index + 1) % this.urls.length;
      this._connect(this.url).then(
        (joined) => {
          let peers;
          try {
            peers = this._adopt(joined);
          } catch {
            return; // closed meanwhile
          }
          this._emit("restored", { peers });
        },
        (error) => {
          if (this._closing) return;
          if (error instanceof JoinError && error.auth) {
            this._emit("stopped", { reason: "auth" });
            return;
          }
          if (this._index === first) delay = Math.min(delay * 2, this.maxBackoff);
          schedule();
        },
      );
    };
    const schedule = () => {
      this._retry = setTimeout(attempt, delay * (0.75 + Math.random() / 2) * 1000);
    };
    schedule();
  }

  /** Sends `data` (an object, §3) to `peer`; false when signaling is down or it is too big. */
  signal(peer, data) {
    if (!validName(peer)) throw new TypeError("peer: a string of 1-256 characters");
    if (!isObject(data)) throw new TypeError("data: an object");
    const ws = this._ws;
    if (!ws || !this.connected || ws.readyState !== OPEN) return false;
    const text = JSON.stringify({ type: "signal", to: peer, data });
    if (encoder.encode(text).length > MAX_SEND_BYTES) return false;
    try {
      ws.send(text);
    } catch {
      return false;
    }
    return true;
  }

  /** Leaves the room for good: no reconnect. */
  close() {
    this._closing = true;
    clearInterval(this._beat);
    clearTimeout(this._retry);
    this._beat = this._retry = null;
    this.connected = false;
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      ws.onerror = ignore;
      safeClose(ws);
    }
    for (const pending of this._pending) safeClose(pending);
  }
}

function ignore() {}

function positive(value, fallback) {
  return typeof value === "number" && value > 0 && Number.isFinite(value) ? value : fallback;
}

function safeClose(ws) {
  try {
    ws.close(1000);
  } catch {
    /* already closed or never opened */
  }
}

/** A server message as an object with a string `type`, or null (bounded, never throws). */
function parse(raw) {
  if (typeof raw !== "string" || raw.length > MAX_MESSAGE_BYTES) return null;
  let message;
  try {
    message = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!isObject(message) || typeof message.type !== "string" || message.type.length > 64) return null;
  return message;
}

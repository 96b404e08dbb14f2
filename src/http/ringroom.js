// ringroom.js: a browser (and node) client for ringroom's chat rooms,
// /chat/{room} (docs/protocol.md in the ringroom repository).
//
// One dependency-free ES module; vendor it as is, or load it from a broker at
// GET /ringroom.js. Types: ringroom.d.ts next to it.
//
//   import { RingroomClient } from "/ringroom.js";
//   const chat = new RingroomClient({ room: "lobby", token });
//   chat.on("message", ({ message }) => show(message));
//   chat.on("state", ({ state, reason, text }) => status(state, text));
//   chat.connect();
//   const { id } = await chat.send("hello");   // resolved by the broker's ack
//
// What it does for an application:
//  - connects with a token (as the subprotocol "bearer.<token>", so it never
//    appears in a URL), or anonymously with an optional display name;
//  - reconnects with jittered exponential back-off, and resumes: the session
//    (?session=&resume=) and the message stream (?since=<last id>&epoch=) are
//    kept in sessionStorage (when there is one), so a reload or a reconnect
//    gets every missed message exactly once, in order;
//  - sends heartbeats at the welcome's heartbeatMs and drops a connection
//    that stopped answering;
//  - gives each sent message a promise resolved by its `ack` and rejected by
//    the `error` carrying its requestId (or by a close);
//  - says why it is offline in words, from close codes and, when an upgrade
//    is refused (browsers do not show its HTTP status), from a short probe.
//
// Events (chat.on(type, fn) returns a function that removes fn):
//   state      {state, reason, text, code, retryInMs}
//   welcome    the welcome frame (user, session, epoch, lastId, heartbeatMs)
//   snapshot   {messages, source}  replace what is shown: "initial" (the
//              room's newest messages), "restore" (kept across a reload),
//              "reset" (the room's log changed: history refetched)
//   message    {message, replayed, own}
//   synced     {recovered, lastId}
//   online     {users, stale}  who is online (after every change)
//   typing     {userId, username, isTyping, typing}  typing: who types now
//   presence, user_joined, user_disconnected: the frames as received
//   error      an `error` frame that answers no pending request

const CLOSE_REASONS = {
  1000: ["closed", "The connection was closed."],
  1001: ["draining", "The server is restarting or shutting down."],
  1002: ["protocol-error", "The server saw a protocol error."],
  1007: ["protocol-error", "The server received invalid text."],
  1008: ["auth", "Your sign-in expired or was revoked."],
  1009: ["too-large", "A message was too large for the server."],
  1011: ["server-error", "The server had an internal error."],
  1013: ["slow-consumer", "The connection fell behind and was reset."],
  4008: ["idle-timeout", "The connection was idle for too long."],
};

const REASON_TEXT = {
  network: "The server cannot be reached.",
  draining: "The server is restarting or shutting down.",
  auth: "Sign-in failed: the token is missing, invalid or expired.",
  "room-full": "The room is full.",
  refused: "The server refused the connection (origin not allowed or too many connections).",
  heartbeat: "The server stopped answering.",
};

// Reasons after which reconnecting cannot help until something changes
// (a new token): the client stops instead of failing again and again.
const FINAL = new Set(["auth"]);

const MAX_KEPT = 200; // messages kept in storage for a reload

export class RingroomError extends Error {
  constructor(code, message, requestId) {
    super(message || code);
    this.name = "RingroomError";
    this.code = code;
    if (requestId !== undefined) this.requestId = requestId;
  }
}

// Reason code and human text for a close code.
export function describeClose(code) {
  const r = CLOSE_REASONS[code];
  if (r) return { reason: r[0], text: r[1] };
  return { reason: "network", text: REASON_TEXT.network };
}

function decodeJwtPayload(token) {
  try {
    const part = String(token).split(".")[1];
    if (!part) return null;
    let b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    const bin = atob(b64);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}

function defaultStorage() {
  try {
    const s = globalThis.sessionStorage;
    if (s) {
      const k = "__ringroom_probe__";
      s.setItem(k, "1");
      s.removeItem(k);
      return s;
    }
  } catch {
    /* storage disabled: keep state in memory */
  }
  return memoryStorage();
}

function defaultBase() {
  const loc = globalThis.location;
  if (loc && /^https?:$/.test(loc.protocol))
    return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host;
  return "ws://127.0.0.1:8080";
}

export class RingroomClient {
  constructor(options = {}) {
    if (!options.room) throw new TypeError("RingroomClient: room is required");
    this.room = String(options.room);
    this.base = String(options.url || defaultBase()).replace(/\/+$/, "");
    this.token = options.token || null;
    this.name = options.name || null;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    this.fetch = options.fetch || (globalThis.fetch ? globalThis.fetch.bind(globalThis) : null);
    this.storage = options.storage === null ? memoryStorage() : options.storage || defaultStorage();
    this.storageKey = options.storageKey || "ringroom:" + this.base + "/chat/" + this.room;
    this.backoff = { minMs: 500, maxMs: 30000, ...(options.backoff || {}) };
    this.heartbeatOverrideMs = options.heartbeatMs || 0;
    this.initialHistory = options.initialHistory || 50;
    this.connectTimeoutMs = options.connectTimeoutMs || 15000;

    this.state = "idle";
    this.reason = null;
    this.user = null;
    this.perms = null;
    this.onlineUsers = new Map(); // userId -> username
    this.onlineStale = false;
    this.stats = { connects: 0, duplicates: 0, gaps: 0 };

    this._handlers = new Map();
    this._ws = null;
    this._wsOpened = false;
    this._welcomed = false;
    this._live = false;
    this._wanted = false; // connect() called and close() not
    this._attempt = 0;
    this._retryTimer = null;
    this._hbTimer = null;
    this._lastRx = 0;
    this._pending = new Map(); // requestId -> {resolve, reject, kind}
    this._historyQueue = []; // requestIds of history requests, in order
    this._typing = new Map(); // userId -> {username, timer}
    this._myTyping = false;
    this._reqSeq = 0;
    this._reqPrefix = Math.random().toString(36).slice(2, 8);
    this._everLive = false;
    this._resumeRetried = false;
    this._saveTimer = null;
    this._saved = this._load();
    // a reload must not lose the last 200 ms of position
    if (typeof globalThis.addEventListener === "function")
      globalThis.addEventListener("pagehide", () => this._saveTimer && this._save(true));
  }

  // ---- events ----------------------------------------------------------------

  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const s = this._handlers.get(type);
    if (s) s.delete(fn);
  }

  _emit(type, detail) {
    const s = this._handlers.get(type);
    if (!s) return;
    for (const fn of [...s]) {
      try {
        fn(detail);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this.reason = extra.reason || null;
    this._emit("state", { state, reason: null, text: "", ...extra });
  }

  // ---- saved state (sessionStorage) ---------------------------------------------

  _load() {
    let s = null;
    try {
      s = JSON.parse(this.storage.getItem(this.storageKey) || "null");
    } catch {
      s = null;
    }
    if (!s || typeof s !== "object") s = {};
    if (!Array.isArray(s.messages)) s.messages = [];
    // a session belongs to one user: another token's user starts afresh
    const sub = this._tokenSub();
    if (s.sub !== undefined && s.sub !== sub) {
      delete s.session;
      delete s.resume;
    }
    s.sub = sub;
    return s;
  }

  _tokenSub() {
    if (!this.token) return null;
    const p = decodeJwtPayload(this.token);
    return p && typeof p.sub === "string" ? p.sub : null;
  }

  _save(now) {
    if (now) {
      clearTimeout(this._saveTimer);
      this._saveTimer = null;
      try {
        this.storage.setItem(this.storageKey, JSON.stringify(this._saved));
      } catch {
        /* quota: keep going without it */
      }
      return;
    }
    if (this._saveTimer) return;
    this._saveTimer = setTimeout(() => this._save(true), 200);
  }

  /** The epoch and newest message id seen (what a reconnect resumes from). */
  get position() {
    return { epoch: this._saved.epoch || null, lastId: this._saved.lastId || 0 };
  }

  /** Messages kept from earlier connections (oldest first). */
  get messages() {
    return this._saved.messages.slice();
  }

  get canWrite() {
    return !this.perms || this.perms.includes("write");
  }

  /** Forget the session and the position (the next connect starts afresh). */
  forget() {
    this._saved = { sub: this._tokenSub(), messages: [] };
    try {
      this.storage.removeItem(this.storageKey);
    } catch {
      /* ignore */
    }
  }

  setToken(token) {
    this.token = token || null;
    const sub = this._tokenSub();
    if (this._saved.sub !== sub) {
      delete this._saved.session;
      delete this._saved.resume;
      this._saved.sub = sub;
      this._save(true);
    }
  }

  // ---- connection ----------------------------------------------------------------

  connect() {
    this._wanted = true;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._ws) return;
    if (this._saved.messages.length && !this._restored) {
      this._restored = true;
      this._emit("snapshot", { messages: this._saved.messages.slice(), source: "restore" });
    }
    this._open();
  }

  close() {
    this._wanted = false;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._setTypingOff();
    const ws = this._ws;
    this._teardown(new RingroomError("closed", "the client closed the connection"));
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        /* already closed */
      }
    }
    this._save(true);
    this._setState("closed", { reason: "closed", text: "Disconnected." });
  }

  _url() {
    const q = new URLSearchParams();
    const s = this._saved;
    if (s.epoch && s.lastId) {
      q.set("since", String(s.lastId));
      q.set("epoch", s.epoch);
    }
    if (s.session && s.resume) {
      q.set("session", s.session);
      q.set("resume", s.resume);
    }
    if (this.name && !this.token) q.set("name", this.name);
    const qs = q.toString();
    return this.base + "/chat/" + encodeURIComponent(this.room) + (qs ? "?" + qs : "");
  }

  _open() {
    if (!this.WebSocket) throw new Error("RingroomClient: no WebSocket implementation");
    this._setState("connecting", { reason: null, text: "Connecting…", attempt: this._attempt });
    let ws;
    const protocols = this.token ? ["ringroom", "bearer." + this.token] : [];
    this._sentResume = !!(this._saved.session && this._saved.resume);
    try {
      ws = protocols.length ? new this.WebSocket(this._url(), protocols) : new this.WebSocket(this._url());
    } catch (e) {
      this._scheduleRetry({ reason: "network", text: String(e && e.message) });
      return;
    }
    this._ws = ws;
    this._wsOpened = false;
    this._welcomed = false;
    this._live = false;
    // an upgrade that never completes (a black-holed path): give up on it
    clearTimeout(this._connectTimer);
    this._connectTimer = setTimeout(() => {
      if (ws !== this._ws || this._wsOpened) return;
      this._teardown(new RingroomError("disconnected", REASON_TEXT.network));
      try {
        ws.close();
      } catch {
        /* ignore */
      }
      this._scheduleRetry({ reason: "network", text: REASON_TEXT.network });
    }, this.connectTimeoutMs);
    ws.onopen = () => {
      if (ws !== this._ws) return;
      clearTimeout(this._connectTimer);
      this._wsOpened = true;
      this._lastRx = Date.now();
      this.stats.connects++;
    };
    ws.onmessage = (ev) => {
      if (ws !== this._ws) return;
      this._lastRx = Date.now();
      let f;
      try {
        f = JSON.parse(typeof ev.data === "string" ? ev.data : "");
      } catch {
        return;
      }
      if (f && typeof f.type === "string") this._frame(f);
    };
    ws.onerror = () => {
      // browsers follow with onclose (1006); some WebSockets (node 20's)
      // fire only this when the upgrade fails: treat it as that close
      if (ws === this._ws && !this._wsOpened) this._closed(1006, "");
    };
    ws.onclose = (ev) => {
      if (ws !== this._ws) return;
      this._closed(ev.code, ev.reason);
    };
  }

  _teardown(err) {
    clearTimeout(this._connectTimer);
    clearInterval(this._hbTimer);
    this._hbTimer = null;
    if (this._ws) {
      this._ws.onopen = this._ws.onmessage = this._ws.onclose = this._ws.onerror = null;
    }
    this._ws = null;
    this._live = false;
    for (const [rid, p] of this._pending) {
      this._pending.delete(rid);
      p.reject(new RingroomError(err.code, err.message, rid));
    }
    this._historyQueue = [];
    for (const [uid] of this._typing) this._typingSet(uid, null, false);
  }

  async _closed(code, reasonText) {
    const opened = this._wsOpened;
    const welcomed = this._welcomed;
    this._teardown(new RingroomError("disconnected", "the connection closed before the answer"));
    if (!this._wanted) return;
    if (!opened) {
      // the upgrade was refused or the network failed: browsers hide the
      // HTTP status, so ask the broker a few cheap questions
      this._setState("connecting", { reason: null, text: "Checking the connection…" });
      const why = await this._diagnose();
      if (!this._wanted || this._ws) return;
      this._scheduleRetry(why);
      return;
    }
    if (code === 1008 && !welcomed && this._sentResume && !this._resumeRetried) {
      // the saved session belongs to another user: start a new one once
      this._resumeRetried = true;
      delete this._saved.session;
      delete this._saved.resume;
      this._save(true);
      this._scheduleRetry({ reason: "auth", text: "Starting a new session.", code }, 0);
      return;
    }
    const d = describeClose(code);
    this._scheduleRetry({ reason: d.reason, text: d.text, code, serverReason: reasonText || "" });
  }

  async _diagnose() {
    const http = this.base.replace(/^ws/, "http");
    if (this.fetch) {
      try {
        const loc = globalThis.location;
        const same = loc && loc.origin === new URL(http).origin;
        const r = await this.fetch(http + "/healthz", { cache: "no-store", mode: same || !loc ? "cors" : "no-cors" });
        if (r.status === 503) return { reason: "draining", text: REASON_TEXT.draining };
      } catch {
        return { reason: "network", text: REASON_TEXT.network };
      }
    }
    // the broker answers: does a plain upgrade (no token, no room) work?
    const echo = await new Promise((resolve) => {
      let ws;
      const done = (ok) => {
        clearTimeout(t);
        if (ws) ws.onopen = ws.onclose = ws.onerror = null;
        try {
          if (ws) ws.close(1000);
        } catch {
          /* ignore */
        }
        resolve(ok);
      };
      const t = setTimeout(() => done(false), 10000);
      try {
        ws = new this.WebSocket(this.base + "/echo");
      } catch {
        done(false);
        return;
      }
      ws.onopen = () => done(true);
      ws.onclose = ws.onerror = () => done(false);
    });
    if (!echo) return { reason: "refused", text: REASON_TEXT.refused };
    // only the room's upgrade fails: a 401 (no or bad token) or a full room
    const p = this.token ? decodeJwtPayload(this.token) : null;
    if (this.token && (!p || (typeof p.exp === "number" && p.exp * 1000 <= Date.now())))
      return { reason: "auth", text: p ? "Your sign-in token has expired." : "The sign-in token is malformed." };
    if (!this.token && !this._everLive)
      return { reason: "auth", text: "This room needs a sign-in token." };
    if (this.token && !this._everLive) return { reason: "auth", text: REASON_TEXT.auth };
    return { reason: "room-full", text: REASON_TEXT["room-full"] };
  }

  _scheduleRetry(why, delayMs) {
    if (FINAL.has(why.reason) && delayMs === undefined) {
      this._wanted = false;
      this._setState("stopped", { ...why, retryInMs: null });
      return;
    }
    let ms = delayMs;
    if (ms === undefined) {
      const cap = Math.min(this.backoff.maxMs, this.backoff.minMs * 2 ** Math.min(this._attempt, 16));
      ms = Math.round(cap / 2 + (Math.random() * cap) / 2);
    }
    this._attempt++;
    this._setState("offline", { ...why, retryInMs: ms });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (this._wanted && !this._ws) this._open();
    }, ms);
  }

  /** Reconnect now (after going offline), skipping the back-off wait. */
  retryNow() {
    if (!this._ws) this.connect();
  }

  _heartbeat(ms) {
    clearInterval(this._hbTimer);
    const every = this.heartbeatOverrideMs || ms || 25000;
    this._hbSentAt = 0;
    this._hbTimer = setInterval(() => {
      const ws = this._ws;
      if (!ws) return;
      // nothing at all since the last heartbeat went out, a period ago:
      // the path is dead even if TCP has not noticed. (Measured from the
      // heartbeat, not the clock: a background tab's timers may run late.)
      const now = Date.now();
      if (this._hbSentAt && this._lastRx < this._hbSentAt && now - this._hbSentAt >= every) {
        this._teardown(new RingroomError("disconnected", REASON_TEXT.heartbeat));
        try {
          ws.close(4000);
        } catch {
          /* ignore */
        }
        this._scheduleRetry({ reason: "heartbeat", text: REASON_TEXT.heartbeat });
        return;
      }
      this._hbSentAt = now;
      this._raw({ type: "heartbeat" });
    }, every);
  }

  _raw(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  // ---- frames from the broker ---------------------------------------------------------

  _frame(f) {
    switch (f.type) {
      case "welcome":
        return this._onWelcome(f);
      case "initial_state":
        return this._onInitial(f);
      case "synced":
        return this._onSynced(f);
      case "message":
        return this._onMessage(f.message);
      case "ack": {
        const p = this._pending.get(f.requestId);
        if (p && p.kind === "message") {
          this._pending.delete(f.requestId);
          p.resolve({ id: f.id, requestId: f.requestId });
        }
        return;
      }
      case "error":
        return this._onError(f);
      case "history":
        return this._onHistory(f);
      case "typing":
        return this._typingSet(f.userId, f.username, !!f.isTyping);
      case "presence":
        return this._emit("presence", f);
      case "user_joined":
        this.onlineUsers.set(f.userId, f.username);
        this._emit("user_joined", f);
        return this._emitOnline();
      case "user_disconnected":
        this.onlineUsers.delete(f.userId);
        this._typingSet(f.userId, f.username, false);
        this._emit("user_disconnected", f);
        return this._emitOnline();
      default:
        return; // heartbeat_ack, pong and anything newer
    }
  }

  _onWelcome(f) {
    this._lastWelcome = f; // its epoch and lastId frame what follows
    this._welcomed = true;
    this._attempt = 0;
    this._resumeRetried = false;
    const s = this._saved;
    if (s.epoch && f.epoch !== s.epoch) this._epochChanged = true;
    s.session = f.session;
    // a fresh resume token replaces the old one (single use); null means
    // "keep the one you have"
    if (typeof f.resume === "string" && f.resume) s.resume = f.resume;
    s.userId = f.user && f.user.id;
    this.user = f.user || null;
    this.perms = f.user && Array.isArray(f.user.perms) ? f.user.perms : null;
    this._save(true);
    this._heartbeat(f.heartbeatMs);
    this._setState("syncing", { text: "Catching up…" });
    this._emit("welcome", f);
  }

  _goLive() {
    this._live = true;
    this._everLive = true;
    this._setState("online", { text: "Connected." });
  }

  _onInitial(f) {
    const msgs = Array.isArray(f.messages) ? f.messages : [];
    const s = this._saved;
    s.epoch = this._welcomeEpoch();
    s.messages = msgs.slice(-MAX_KEPT);
    s.lastId = Math.max(this._welcomeLastId(), msgs.length ? msgs[msgs.length - 1].id : 0);
    this._save(true);
    this.onlineUsers = new Map((f.onlineUsers || []).map((u) => [u.userId, u.username]));
    this.onlineStale = false;
    this._emit("snapshot", { messages: msgs.slice(), source: "initial" });
    this._emitOnline();
    this._goLive();
  }

  _welcomeEpoch() {
    return (this._lastWelcome && this._lastWelcome.epoch) || null;
  }

  _welcomeLastId() {
    return (this._lastWelcome && this._lastWelcome.lastId) || 0;
  }

  _onSynced(f) {
    const s = this._saved;
    const epochNow = this._lastWelcome ? this._lastWelcome.epoch : s.epoch;
    if (!f.recovered && (this._epochChanged || epochNow !== s.epoch)) {
      // another log: the kept messages are not this room's any more
      s.messages = [];
      s.epoch = epochNow;
      s.lastId = f.lastId;
      this._epochChanged = false;
      this._save(true);
      this._refill(f.lastId);
    } else {
      s.epoch = epochNow;
      if (f.lastId > (s.lastId || 0)) s.lastId = f.lastId;
      this._save(true);
    }
    if (Array.isArray(f.onlineUsers)) {
      this.onlineUsers = new Map(f.onlineUsers.map((u) => [u.userId, u.username]));
      this.onlineStale = false;
    } else {
      // this broker's synced has no onlineUsers: keep the list, say so
      if (this.user) this.onlineUsers.set(this.user.id, this.user.name);
      this.onlineStale = true;
    }
    this._emitOnline();
    this._emit("synced", { recovered: !!f.recovered, lastId: f.lastId });
    this._goLive();
  }

  _refill(lastId) {
    const rid = this._rid();
    this._pending.set(rid, {
      kind: "history",
      resolve: (h) => {
        this._saved.messages = h.messages.slice(-MAX_KEPT);
        this._save();
        this._emit("snapshot", { messages: h.messages.slice(), source: "reset" });
      },
      reject: () => {},
    });
    this._historyQueue.push(rid);
    this._raw({ type: "history", beforeId: lastId + 1, limit: this.initialHistory, requestId: rid });
  }

  _onMessage(m) {
    if (!m || typeof m.id !== "number") return;
    const s = this._saved;
    const last = s.lastId || 0;
    if (m.id <= last && s.epoch === (this._lastWelcome && this._lastWelcome.epoch)) {
      this.stats.duplicates++; // never expected: the broker sends each id once
      return;
    }
    if (last && m.id !== last + 1) this.stats.gaps++;
    s.lastId = m.id;
    s.messages.push(m);
    if (s.messages.length > MAX_KEPT) s.messages.splice(0, s.messages.length - MAX_KEPT);
    this._save();
    const own = !!(this.user && m.userId === this.user.id);
    if (m.userId) this._typingSet(m.userId, m.username, false);
    this._emit("message", { message: m, replayed: !this._live, own });
  }

  _onHistory(f) {
    const rid = this._historyQueue.shift();
    const h = { messages: Array.isArray(f.messages) ? f.messages : [], hasMore: !!f.hasMore };
    const p = rid && this._pending.get(rid);
    if (p) {
      this._pending.delete(rid);
      p.resolve(h);
    }
    this._emit("history", h);
  }

  _onError(f) {
    const rid = f.requestId;
    const p = rid !== undefined ? this._pending.get(rid) : null;
    if (p) {
      this._pending.delete(rid);
      if (p.kind === "history") this._historyQueue = this._historyQueue.filter((x) => x !== rid);
      p.reject(new RingroomError(f.code, f.message, rid));
      return;
    }
    this._emit("error", new RingroomError(f.code, f.message, rid));
  }

  _emitOnline() {
    const users = [...this.onlineUsers].map(([userId, username]) => ({ userId, username }));
    this._emit("online", { users, stale: this.onlineStale });
  }

  _typingSet(userId, username, isTyping) {
    if (!userId) return;
    const cur = this._typing.get(userId);
    if (cur) clearTimeout(cur.timer);
    if (!isTyping && !cur) return;
    if (isTyping) {
      // no "stopped" may ever come (a lost frame): forget it after a while
      const timer = setTimeout(() => this._typingSet(userId, username, false), 8000);
      this._typing.set(userId, { username, timer });
    } else {
      this._typing.delete(userId);
    }
    const typing = [...this._typing].map(([id, t]) => ({ userId: id, username: t.username }));
    this._emit("typing", { userId, username: username || (cur && cur.username), isTyping, typing });
  }

  // ---- requests -------------------------------------------------------------------------

  _rid() {
    return this._reqPrefix + "-" + ++this._reqSeq;
  }

  /**
   * Send a chat message. Resolves with {id, requestId} once the broker has
   * stored it (its `ack`); rejects with a RingroomError: the broker's error
   * code (no_permission, too_large, rate_limited, ...), "offline" when not
   * connected, or "disconnected" when the connection closed first (the
   * message may still have been stored: it then arrives in the replay).
   */
  send(content, options = {}) {
    if (typeof content !== "string") return Promise.reject(new TypeError("content must be a string"));
    const rid = options.requestId !== undefined ? String(options.requestId) : this._rid();
    if (!this._live) return Promise.reject(new RingroomError("offline", "not connected", rid));
    if (!this.canWrite)
      return Promise.reject(new RingroomError("no_permission", "this user may not write", rid));
    const frame = { type: "message", content, requestId: rid };
    if (options.threadId !== undefined) frame.threadId = options.threadId;
    const p = new Promise((resolve, reject) => this._pending.set(rid, { kind: "message", resolve, reject }));
    this._setTypingOff();
    this._raw(frame);
    return p;
  }

  /** Ask for older messages: ids below beforeId (default: the newest), limit ≤ 100. */
  history({ beforeId = 0, limit = 50 } = {}) {
    if (!this._live) return Promise.reject(new RingroomError("offline", "not connected"));
    const rid = this._rid();
    const p = new Promise((resolve, reject) => this._pending.set(rid, { kind: "history", resolve, reject }));
    this._historyQueue.push(rid);
    this._raw({ type: "history", beforeId, limit: Math.max(1, Math.min(100, limit)), requestId: rid });
    return p;
  }

  /** Say whether this user is typing; sent only on a change, only by writers. */
  typing(isTyping) {
    isTyping = !!isTyping;
    if (!this._live || !this.canWrite || isTyping === this._myTyping) return;
    this._myTyping = isTyping;
    this._raw({ type: "typing", isTyping });
  }

  _setTypingOff() {
    if (this._myTyping) {
      this._myTyping = false;
      this._raw({ type: "typing", isTyping: false });
    }
  }

  /** Broadcast a presence status (any short string: "away", "busy", ...). */
  presence(status) {
    if (this._live) this._raw({ type: "presence", status: String(status) });
  }

  /** Who types now (other users). */
  get typingUsers() {
    return [...this._typing].map(([userId, t]) => ({ userId, username: t.username }));
  }
}

export default RingroomClient;

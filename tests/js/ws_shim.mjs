// Test-only: a browser-like WebSocket client over node's http, net and
// crypto modules, for a node without a global WebSocket (Debian 12's node
// 18). Just what ringroom.js uses: new WebSocket(url, protocols), readyState,
// protocol, send(text), close(code, reason), and the onopen / onmessage /
// onerror / onclose properties with browser semantics (a refused upgrade
// fires error then close 1006; a close event carries the server's code).
// ws:// only; frames are masked, control frames answered (ping -> pong,
// close -> close), fragmented messages reassembled.
import { request } from "node:http";
import { createHash, randomBytes } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export class WebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url, protocols) {
    const u = new URL(String(url));
    if (u.protocol !== "ws:") throw new SyntaxError("ws_shim: only ws:// URLs");
    this.url = u.href;
    this.readyState = 0;
    this.protocol = "";
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    this._buf = Buffer.alloc(0);
    this._frag = null; // {opcode, parts}
    this._closeSent = false;
    this._closeCode = 1006;
    this._closeReason = "";
    this._done = false;
    const key = randomBytes(16).toString("base64");
    const headers = {
      Connection: "Upgrade",
      Upgrade: "websocket",
      "Sec-WebSocket-Key": key,
      "Sec-WebSocket-Version": "13",
    };
    const list = protocols === undefined ? [] : [].concat(protocols);
    if (list.length) headers["Sec-WebSocket-Protocol"] = list.join(", ");
    const req = request({ host: u.hostname, port: u.port || 80, path: u.pathname + u.search, headers });
    req.on("upgrade", (res, socket, head) => {
      const want = createHash("sha1").update(key + GUID).digest("base64");
      if (res.headers["sec-websocket-accept"] !== want) {
        socket.destroy();
        this._fail();
        return;
      }
      this.protocol = res.headers["sec-websocket-protocol"] || "";
      this._socket = socket;
      socket.setNoDelay(true);
      this.readyState = 1;
      socket.on("data", (d) => this._data(d));
      socket.on("close", () => this._finish());
      socket.on("error", () => {});
      this._call("onopen", { type: "open" });
      if (head && head.length) this._data(head);
    });
    req.on("response", (res) => {
      res.resume(); // any answer but 101 is a refused upgrade
      this._fail();
    });
    req.on("error", () => this._fail());
    req.end();
  }

  _call(name, ev) {
    const fn = this[name];
    if (typeof fn === "function") fn.call(this, ev);
  }

  _fail() {
    if (this._done) return;
    this._done = true;
    this.readyState = 3;
    this._call("onerror", { type: "error" });
    this._call("onclose", { type: "close", code: 1006, reason: "", wasClean: false });
  }

  _finish() {
    if (this._done) return;
    this._done = true;
    this.readyState = 3;
    const clean = this._closeCode !== 1006;
    if (!clean) this._call("onerror", { type: "error" });
    this._call("onclose", { type: "close", code: this._closeCode, reason: this._closeReason, wasClean: clean });
  }

  _frame(opcode, payload) {
    const n = payload.length;
    const head = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    if (n < 126) head[1] = 0x80 | n;
    else if (n < 65536) {
      head[1] = 0x80 | 126;
      head.writeUInt16BE(n, 2);
    } else {
      head[1] = 0x80 | 127;
      head.writeBigUInt64BE(BigInt(n), 2);
    }
    const mask = randomBytes(4);
    const body = Buffer.from(payload);
    for (let i = 0; i < n; i++) body[i] ^= mask[i & 3];
    this._socket.write(Buffer.concat([head, mask, body]));
  }

  send(data) {
    if (this.readyState !== 1) throw new Error("ws_shim: not open");
    const text = typeof data === "string";
    this._frame(text ? 1 : 2, text ? Buffer.from(data, "utf8") : Buffer.from(data));
  }

  close(code, reason = "") {
    if (this.readyState === 0) {
      this._fail();
      return;
    }
    if (this.readyState !== 1) return;
    this.readyState = 2;
    const r = Buffer.from(String(reason), "utf8");
    const p = code === undefined ? Buffer.alloc(0) : Buffer.concat([Buffer.from([code >> 8, code & 255]), r]);
    this._closeSent = true;
    this._frame(8, p);
    // the server answers with its close and then closes TCP; don't wait forever
    setTimeout(() => this._socket && this._socket.destroy(), 5000).unref();
  }

  _data(d) {
    this._buf = this._buf.length ? Buffer.concat([this._buf, d]) : d;
    for (;;) {
      const b = this._buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const opcode = b[0] & 0x0f;
      let n = b[1] & 0x7f;
      let pos = 2;
      if (n === 126) {
        if (b.length < 4) return;
        n = b.readUInt16BE(2);
        pos = 4;
      } else if (n === 127) {
        if (b.length < 10) return;
        n = Number(b.readBigUInt64BE(2));
        pos = 10;
      }
      if (b.length < pos + n) return;
      const payload = b.subarray(pos, pos + n);
      this._buf = b.subarray(pos + n);
      this._onFrame(fin, opcode, Buffer.from(payload));
    }
  }

  _onFrame(fin, opcode, payload) {
    if (opcode === 8) {
      this._closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      this._closeReason = payload.length > 2 ? payload.subarray(2).toString("utf8") : "";
      if (!this._closeSent && this.readyState === 1) {
        this._closeSent = true;
        this.readyState = 2;
        this._frame(8, payload.subarray(0, 2));
      }
      this._socket.end();
      return;
    }
    if (opcode === 9) {
      if (this.readyState === 1) this._frame(10, payload);
      return;
    }
    if (opcode === 10) return;
    if (opcode === 0 && this._frag) {
      this._frag.parts.push(payload);
    } else {
      this._frag = { opcode, parts: [payload] };
    }
    if (!fin) return;
    const { opcode: op, parts } = this._frag;
    this._frag = null;
    const whole = Buffer.concat(parts);
    if (this.readyState !== 1) return;
    this._call("onmessage", { type: "message", data: op === 1 ? whole.toString("utf8") : whole });
  }
}

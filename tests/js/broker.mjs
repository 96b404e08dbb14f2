// Test helpers for the node suites: the real broker on a free loopback port
// with its own --data-dir (like tests/integration/rrtest.py), HS256 tokens,
// and "eventually" waits. Standard library only.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync, openSync, closeSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const BINARY = process.env.RINGROOM_BINARY;
// as tests/integration/rrtest.py: extra broker flags, and RINGROOM_SAN=1
// (a sanitizer build: its log must hold no report)
const EXTRA_ARGS = (process.env.RINGROOM_EXTRA_ARGS || "").split(/\s+/).filter(Boolean);
const SAN_MARKERS = ["ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"];

// The platform's WebSocket when it has one (node 22, or 20 with
// --experimental-websocket); otherwise (node 18) the test-only shim over
// node's own modules. RINGROOM_WS_SHIM=1 forces the shim.
if (typeof globalThis.WebSocket !== "function" || process.env.RINGROOM_WS_SHIM === "1") {
  globalThis.WebSocket = (await import("./ws_shim.mjs")).WebSocket;
  console.log("WebSocket: tests/js/ws_shim.mjs");
} else {
  console.log("WebSocket: node's own");
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Poll until fn() is truthy. The deadline is generous on purpose: it only
// bounds a hang (2 shared cores, a broker restart, back-off waits), it never
// measures speed.
export async function eventually(fn, what, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error("not within " + ms / 1000 + " s: " + what);
    await sleep(25);
  }
}

export class Broker {
  constructor(args = [], name = "js") {
    if (!BINARY) throw new Error("RINGROOM_BINARY is not set");
    this.args = args;
    this.dataDir = mkdtempSync(join(tmpdir(), "ringroom-" + name + "-data-"));
    this.logPath = join(this.dataDir, "..", "ringroom-" + name + "-" + process.pid + "-" + Date.now() + ".log");
    this.port = null;
    this.proc = null;
  }

  get url() {
    return "ws://127.0.0.1:" + this.port;
  }

  async start(port) {
    for (let attempt = 0; attempt < 3; attempt++) {
      this.port = port || (await freePort());
      const fd = openSync(this.logPath, "a");
      this.proc = spawn(BINARY, ["--port", String(this.port), "--bind", "127.0.0.1", "--cores", "2",
        "--data-dir", this.dataDir, ...this.args, ...EXTRA_ARGS], { stdio: ["ignore", fd, fd] });
      closeSync(fd);
      const exited = new Promise((r) => this.proc.once("exit", (code) => r(code)));
      this.exited = exited;
      const end = Date.now() + 20000;
      while (Date.now() < end) {
        if (this.proc.exitCode !== null) break;
        try {
          const r = await fetch("http://127.0.0.1:" + this.port + "/healthz");
          if (r.status === 200) return this;
        } catch {
          /* not listening yet */
        }
        await sleep(50);
      }
      if (this.proc.exitCode === null) this.proc.kill("SIGKILL");
      await exited;
      if (port) break; // a fixed port (a restart) is not retried elsewhere
    }
    throw new Error("broker did not start:\n" + this.log());
  }

  // SIGTERM: members get close 1001, then the broker exits 0.
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return this.proc ? this.proc.exitCode : null;
    this.proc.kill("SIGTERM");
    const code = await this.exited;
    return code;
  }

  // What is wrong with how it ended (null when all is well): SIGTERM must
  // exit 0, and a sanitizer build's log must hold no report.
  async stopProblems() {
    const code = await this.stop();
    const problems = [];
    if (code !== 0) problems.push("exit status " + code + " after SIGTERM");
    if (process.env.RINGROOM_SAN === "1") {
      const bad = this.log().split("\n").filter((l) => SAN_MARKERS.some((m) => l.includes(m)));
      if (bad.length) problems.push("sanitizer report: " + bad[0]);
    }
    return problems.length ? problems.join("; ") + "\n" + this.log() : null;
  }

  // The room logs are lost: a stopped broker's --data-dir emptied (every
  // room starts a new epoch on the next start).
  wipe() {
    if (this.proc && this.proc.exitCode === null) throw new Error("wipe() needs a stopped broker");
    rmSync(this.dataDir, { recursive: true, force: true });
    mkdirSync(this.dataDir);
  }

  log() {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }

  cleanup() {
    rmSync(this.dataDir, { recursive: true, force: true });
    rmSync(this.logPath, { force: true });
  }
}

const b64url = (buf) => Buffer.from(buf).toString("base64url");

export function mintToken(secret, { sub, name, perms = ["read", "write"], ttl = 3600, exp } = {}) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub, name, perms, exp: exp ?? Math.floor(Date.now() / 1000) + ttl }));
  const sig = createHmac("sha256", secret).update(head + "." + body).digest("base64url");
  return head + "." + body + "." + sig;
}

// A sessionStorage stand-in shared by two client objects: the second one is
// "the same tab after a reload".
export function tabStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}

// The platform's WebSocket, recording every URL it is asked to open (the
// tests check what a reconnect asks for).
export function recordingWebSocket(urls) {
  const WS = globalThis.WebSocket;
  return class extends WS {
    constructor(url, protocols) {
      urls.push(String(url));
      super(url, protocols);
    }
  };
}

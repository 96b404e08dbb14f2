// ringroom.js (src/http/ringroom.js) against the live broker, checking the
// client side of docs/protocol.md (acks, errors, replay, resume, close
// codes and refusals). Each case
// starts the real broker (RINGROOM_BINARY) on a free loopback port and talks
// to it through the platform's WebSocket. Run: tests/js/run.sh <broker>.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { RingroomClient, RingroomError, describeClose } from "../../src/http/ringroom.js";
import { Broker, eventually, mintToken, tabStorage, recordingWebSocket, freePort, sleep } from "./broker.mjs";

const brokers = [];
const clients = [];

async function broker(args = [], name = "js") {
  const b = new Broker(args, name);
  brokers.push(b);
  return b.start();
}

function client(b, opts = {}) {
  const c = new RingroomClient({ url: b.url, storage: tabStorage(), ...opts });
  clients.push(c);
  return c;
}

// Everything a client saw, for the assertions.
function watch(c) {
  const seen = { ids: [], messages: [], states: [], errors: [], typing: [], joined: [], left: [], online: [],
    presence: [], snapshots: [], synced: [], replayed: 0 };
  c.on("message", ({ message, replayed }) => {
    seen.ids.push(message.id);
    seen.messages.push(message);
    if (replayed) seen.replayed++;
  });
  c.on("snapshot", (s) => {
    seen.snapshots.push(s);
    if (s.source === "initial") for (const m of s.messages) seen.ids.push(m.id);
  });
  c.on("state", (s) => seen.states.push(s));
  c.on("synced", (s) => seen.synced.push(s));
  c.on("error", (e) => seen.errors.push(e));
  c.on("typing", (t) => seen.typing.push(t));
  c.on("user_joined", (f) => seen.joined.push(f));
  c.on("user_disconnected", (f) => seen.left.push(f));
  c.on("online", (o) => seen.online.push(o));
  c.on("presence", (p) => seen.presence.push(p));
  return seen;
}

const online = (c) => eventually(() => c.state === "online", "client online");

// a safety net when a case failed half-way; the last case checks the exits
after(async () => {
  for (const c of clients) c.close();
  for (const b of brokers) {
    await b.stop();
    b.cleanup();
  }
});

test("send() resolves with the ack's id, and the message comes back as the sender's own", async () => {
  const b = await broker();
  const c = client(b, { room: "ack" });
  const seen = watch(c);
  c.connect();
  await online(c);
  const r = await c.send("first words");
  assert.equal(typeof r.id, "number");
  assert.equal(r.id, 1, "a new room numbers from 1");
  await eventually(() => seen.messages.some((m) => m.id === r.id), "the broadcast of the acked message");
  const m = seen.messages.find((x) => x.id === r.id);
  assert.equal(m.content, "first words");
  assert.equal(m.userId, c.user.id);
  const r2 = await c.send("second");
  assert.equal(r2.id, 2, "ids increase by one");
});

test("an error frame rejects the promise of the request with its requestId", async () => {
  const b = await broker();
  const c = client(b, { room: "err" });
  c.connect();
  await online(c);
  // over the 4096-byte content cap: too_large, answered with the requestId
  await assert.rejects(c.send("x".repeat(5000), { requestId: "big-1" }), (e) => {
    assert.ok(e instanceof RingroomError);
    assert.equal(e.code, "too_large");
    assert.equal(e.requestId, "big-1");
    return true;
  });
  // threadId must be a string: invalid_format, same request
  await assert.rejects(c.send("hi", { threadId: 7 }), (e) => e.code === "invalid_format" && typeof e.requestId === "string");
  // the connection stays usable: the next message is acked
  const r = await c.send("still here");
  assert.equal(typeof r.id, "number");
});

test("history() pages back through older messages, oldest first", async () => {
  const b = await broker();
  const c = client(b, { room: "hist" });
  c.connect();
  await online(c);
  for (let i = 1; i <= 5; i++) await c.send("m" + i);
  const h = await c.history({ beforeId: 5, limit: 2 });
  assert.deepEqual(h.messages.map((m) => m.id), [3, 4]);
  assert.equal(h.hasMore, true);
  const h2 = await c.history({ beforeId: 3, limit: 10 });
  assert.deepEqual(h2.messages.map((m) => m.content), ["m1", "m2"]);
});

test("typing, presence, user_joined and user_disconnected reach the other member", async () => {
  const b = await broker();
  const a = client(b, { room: "social" });
  const sa = watch(a);
  a.connect();
  await online(a);
  const o = client(b, { room: "social" });
  o.connect();
  await online(o);
  await eventually(() => sa.joined.some((j) => j.userId === o.user.id), "user_joined for the second user");
  await eventually(() => a.onlineUsers.has(o.user.id), "the second user in a's online list");
  o.typing(true);
  await eventually(() => sa.typing.some((t) => t.userId === o.user.id && t.isTyping), "typing on");
  assert.deepEqual(a.typingUsers.map((t) => t.userId), [o.user.id]);
  o.typing(false);
  await eventually(() => a.typingUsers.length === 0, "typing off");
  o.presence("away");
  await eventually(() => sa.presence.some((p) => p.userId === o.user.id && p.status === "away"), "presence");
  o.close();
  await eventually(() => sa.left.some((l) => l.userId === o.user.id), "user_disconnected");
  assert.equal(a.onlineUsers.has(o.user.id), false);
});

test("after the broker closes the connection (restart, 1001) the client replays with since/epoch: no duplicate, no gap", async () => {
  const b = await broker([], "restart");
  const urls = [];
  // the reader comes back slowly (a 3 s minimum back-off) so the publisher
  // publishes while it is away; the publisher comes back fast
  const reader = client(b, { room: "replay", WebSocket: recordingWebSocket(urls), backoff: { minMs: 3000, maxMs: 4000 } });
  const seen = watch(reader);
  reader.connect();
  await online(reader);
  const pub = client(b, { room: "replay", backoff: { minMs: 100, maxMs: 400 } });
  pub.connect();
  await online(pub);
  for (let i = 1; i <= 5; i++) await pub.send("before " + i);
  await eventually(() => seen.ids.length === 5, "the first five live");
  const epoch = reader.position.epoch;

  const port = b.port;
  assert.equal(await b.stop(), 0, "the broker drains and exits 0");
  await eventually(() => seen.states.some((s) => s.state === "offline" && s.reason === "draining" && s.code === 1001),
    "the reader says the server is draining (close 1001)");
  await b.start(port); // same port, same --data-dir
  await online(pub);
  const sentWhileAway = [];
  for (let i = 1; i <= 5; i++) sentWhileAway.push((await pub.send("while away " + i)).id);
  assert.notEqual(reader.state, "online", "the reader is still away while these are published");
  await online(reader);
  for (let i = 1; i <= 5; i++) await pub.send("after " + i);
  await eventually(() => seen.ids.length >= 15, "all fifteen messages");
  await sleep(300); // a duplicate would arrive right behind the last one
  assert.deepEqual(seen.ids, Array.from({ length: 15 }, (_, i) => i + 1), "every id exactly once, in order");
  assert.equal(reader.stats.duplicates, 0);
  assert.equal(reader.stats.gaps, 0);
  assert.ok(seen.replayed >= 5, "the ones published while away came as a replay (" + seen.replayed + ")");
  const re = new URL(urls[urls.length - 1]);
  assert.equal(re.searchParams.get("since"), "5", "the reconnect asked for what followed id 5");
  assert.equal(re.searchParams.get("epoch"), epoch);
  assert.ok(re.searchParams.get("session") && re.searchParams.get("resume"), "and resumed its session");
  assert.deepEqual(sentWhileAway, [6, 7, 8, 9, 10]);
});

test("a reload (a new client on the same sessionStorage) resumes the session and replays only what it missed", async () => {
  const b = await broker();
  const storage = tabStorage();
  const first = client(b, { room: "reload", storage });
  first.connect();
  await online(first);
  const me = first.user.id;
  await first.send("mine");
  const pub = client(b, { room: "reload" });
  pub.connect();
  await online(pub);
  await pub.send("seen before the reload");
  await eventually(() => first.position.lastId === 2, "the first page saw id 2");
  first.close(); // the page goes away
  await pub.send("missed 1");
  await pub.send("missed 2");

  const urls = [];
  const again = client(b, { room: "reload", storage, WebSocket: recordingWebSocket(urls) });
  const seen = watch(again);
  const welcomed = new Promise((r) => again.on("welcome", r));
  again.connect();
  assert.deepEqual(seen.snapshots[0].messages.map((m) => m.id), [1, 2], "the kept messages are shown at once");
  assert.equal(seen.snapshots[0].source, "restore");
  const w = await welcomed;
  await online(again);
  assert.equal(w.resumed, true, "the session was resumed");
  assert.equal(again.user.id, me, "as the same (anonymous) user");
  await eventually(() => seen.ids.length === 2, "the two missed messages");
  assert.deepEqual(seen.ids, [3, 4]);
  assert.equal(seen.replayed, 2);
  assert.equal(new URL(urls[0]).searchParams.get("since"), "2");
});

test("state reasons: a 401 stops with reason auth (no token, bad token, expired token); a valid token goes online", async () => {
  const secret = "node-test-secret";
  const b = await broker(["--auth-secret", secret], "auth");
  const cases = [
    ["no token", null, /needs a sign-in token/],
    ["bad signature", mintToken("not-the-secret", { sub: "u1", name: "alice" }), /token/],
    ["expired", mintToken(secret, { sub: "u1", name: "alice", exp: Math.floor(Date.now() / 1000) - 60 }), /expired/],
  ];
  for (const [what, token, text] of cases) {
    const c = client(b, { room: "locked", token });
    const seen = watch(c);
    c.connect();
    await eventually(() => c.state === "stopped", what + ": stopped");
    const last = seen.states[seen.states.length - 1];
    assert.equal(last.reason, "auth", what);
    assert.match(last.text, text, what);
    assert.equal(last.retryInMs, null, what + ": no retry scheduled");
    // stopped means stopped: no reconnect attempts behind the user's back
    const n = seen.states.length;
    await sleep(1500);
    assert.equal(seen.states.length, n, what + ": no further attempts");
  }
  const ok = client(b, { room: "locked", token: mintToken(secret, { sub: "u9", name: "zoe" }) });
  ok.connect();
  await online(ok);
  assert.equal(ok.user.name, "zoe");
  assert.equal((await ok.send("signed in")).id, 1);
});

test("a read-only token: canWrite is false, send() is refused locally and typing sends nothing", async () => {
  const secret = "ro-secret";
  const b = await broker(["--auth-secret", secret], "ro");
  const ro = client(b, { room: "ro", token: mintToken(secret, { sub: "r1", name: "reader", perms: ["read"] }) });
  const seen = watch(ro);
  ro.connect();
  await online(ro);
  assert.equal(ro.canWrite, false);
  await assert.rejects(ro.send("hi"), (e) => e.code === "no_permission");
  ro.typing(true);
  ro.typing(false);
  // a round trip proves the broker had the chance to answer anything sent
  await ro.history({ limit: 1 });
  assert.deepEqual(seen.errors, [], "no error frame from the broker");
});

test("state reason network: nothing listens on the port", async () => {
  const port = await freePort();
  const c = new RingroomClient({ url: "ws://127.0.0.1:" + port, room: "x", storage: null, backoff: { minMs: 60000, maxMs: 60000 } });
  clients.push(c);
  const states = [];
  c.on("state", (s) => states.push(s));
  c.connect();
  await eventually(() => c.state === "offline", "offline");
  const last = states[states.length - 1];
  assert.equal(last.reason, "network");
  assert.ok(last.retryInMs >= 30000 && last.retryInMs <= 60000, "jittered back-off within [cap/2, cap]");
  c.close();
});

test("describeClose maps the broker's close codes to reasons", () => {
  assert.equal(describeClose(1001).reason, "draining");
  assert.equal(describeClose(1008).reason, "auth");
  assert.equal(describeClose(1013).reason, "slow-consumer");
  assert.equal(describeClose(4008).reason, "idle-timeout");
  assert.equal(describeClose(1006).reason, "network");
});

test("heartbeats: a broker that stops answering (SIGSTOP) is noticed, and the client comes back after SIGCONT", async () => {
  const b = await broker([], "hb");
  // a short heartbeat period so the dead path shows soon; the assertions
  // only wait for states, they time nothing
  const c = client(b, { room: "hb", heartbeatMs: 300, backoff: { minMs: 100, maxMs: 200 } });
  const seen = watch(c);
  c.connect();
  await online(c);
  await c.send("before the pause");
  b.proc.kill("SIGSTOP");
  try {
    await eventually(() => seen.states.some((s) => s.state === "offline" && s.reason === "heartbeat"),
      "offline with reason heartbeat while the broker is stopped");
  } finally {
    b.proc.kill("SIGCONT");
  }
  await online(c);
  const r = await c.send("after the pause");
  assert.equal(r.id, 2);
  await eventually(() => seen.ids.includes(2), "the new message");
  assert.deepEqual(seen.ids, [1, 2]);
});

test("the room's log was lost (new epoch): synced says recovered:false, the client drops what it kept and numbering starts again", async () => {
  const b = await broker([], "epoch");
  const c = client(b, { room: "epoch", backoff: { minMs: 100, maxMs: 400 } });
  const seen = watch(c);
  c.connect();
  await online(c);
  for (let i = 1; i <= 3; i++) await c.send("old " + i);
  await eventually(() => c.position.lastId === 3, "position at id 3");
  const oldEpoch = c.position.epoch;
  const port = b.port;
  assert.equal(await b.stop(), 0);
  b.wipe();
  await b.start(port);
  const s = await eventually(() => seen.synced[seen.synced.length - 1], "synced after the restart");
  assert.equal(s.recovered, false, "another epoch cannot be recovered");
  await eventually(() => seen.snapshots.some((x) => x.source === "reset"), "a reset snapshot");
  assert.deepEqual(seen.snapshots.find((x) => x.source === "reset").messages, [], "the new log is empty");
  assert.notEqual(c.position.epoch, oldEpoch);
  assert.deepEqual(c.messages, [], "the kept messages of the old epoch are gone");
  await online(c);
  const r = await c.send("new 1");
  assert.equal(r.id, 1, "the new epoch numbers from 1");
  await eventually(() => seen.messages.some((m) => m.content === "new 1"), "the new id 1 is delivered, not taken for a duplicate");
  assert.equal(c.stats.duplicates, 0);
});

test("every broker exits 0 on SIGTERM (and, under RINGROOM_SAN=1, logged no sanitizer report)", async () => {
  for (const c of clients) c.close();
  assert.ok(brokers.length > 0);
  for (const b of brokers) assert.equal(await b.stopProblems(), null);
});

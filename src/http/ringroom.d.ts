// Type declarations for ringroom.js, the client of ringroom's chat rooms
// (/chat/{room}; the wire protocol is docs/protocol.md in the ringroom
// repository).

/** A stored chat message, as the broker sends it. */
export interface ChatMessage {
  id: number;
  userId: string;
  username: string;
  content: string;
  /** milliseconds since the Unix epoch, stamped by the broker */
  timestamp: number;
  threadId: string | null;
}

export interface OnlineUser {
  userId: string;
  username: string;
}

export interface Welcome {
  type: "welcome";
  room: string;
  session: string;
  /** the token to resume this session with; null: keep the one you have */
  resume: string | null;
  resumed?: boolean;
  epoch: string;
  lastId: number;
  user: { id: string; name: string; perms?: Array<"read" | "write">; joinedAt?: number };
  heartbeatMs: number;
}

export type ConnectionState =
  | "idle"
  | "connecting" // opening the WebSocket (or finding out why it failed)
  | "syncing" // welcomed; the initial state or the replay is arriving
  | "online" // live: send() works
  | "offline" // lost; a reconnect is scheduled in retryInMs
  | "stopped" // not retrying: reason "auth" (a new token is needed)
  | "closed"; // close() was called

export type Reason =
  | "network" // the broker cannot be reached, or the connection dropped (1006)
  | "draining" // the broker is shutting down or restarting (1001, or /healthz 503)
  | "auth" // 401 before the upgrade, or 1008: token missing, invalid, expired or revoked
  | "room-full" // the room's upgrade was refused while the broker answers (503)
  | "refused" // every upgrade is refused: Origin not allowed (403) or a connection limit
  | "slow-consumer" // 1013: the connection fell behind; the reconnect replays
  | "idle-timeout" // 4008
  | "heartbeat" // nothing received for a period after a heartbeat was sent
  | "protocol-error" // 1002, 1007
  | "too-large" // 1009
  | "server-error" // 1011
  | "closed"; // 1000

export interface StateEvent {
  state: ConnectionState;
  reason: Reason | null;
  /** a sentence for people */
  text: string;
  /** the close code, when the state follows a close */
  code?: number;
  /** the close frame's reason text, when the broker gave one */
  serverReason?: string;
  /** when offline: milliseconds until the next attempt; null when stopped */
  retryInMs?: number | null;
  attempt?: number;
}

export interface SnapshotEvent {
  messages: ChatMessage[];
  /** initial: the room's newest messages; restore: kept across a reload; reset: the room's log changed */
  source: "initial" | "restore" | "reset";
}

export interface MessageEvent {
  message: ChatMessage;
  /** delivered by a replay (since=) rather than live */
  replayed: boolean;
  /** sent by this client's user */
  own: boolean;
}

export interface TypingEvent {
  userId: string;
  username: string;
  isTyping: boolean;
  /** everyone (else) typing now */
  typing: OnlineUser[];
}

export interface HistoryPage {
  messages: ChatMessage[];
  hasMore: boolean;
}

export interface Events {
  state: StateEvent;
  welcome: Welcome;
  snapshot: SnapshotEvent;
  message: MessageEvent;
  synced: { recovered: boolean; lastId: number };
  /** stale: the broker did not send the list after a replay; it may be out of date */
  online: { users: OnlineUser[]; stale: boolean };
  typing: TypingEvent;
  presence: { type: "presence"; userId: string; username?: string; status: string };
  user_joined: { type: "user_joined"; userId: string; username: string };
  user_disconnected: { type: "user_disconnected"; userId: string; username: string };
  history: HistoryPage;
  /** an error frame that answers no pending request */
  error: RingroomError;
}

/** Enough of sessionStorage. */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface Options {
  /** the room's name: 1-128 bytes of A-Z a-z 0-9 . _ ~ - */
  room: string;
  /** ws:// or wss:// origin of the broker; default: the page's own host */
  url?: string;
  /** an HS256 JWT (claims sub, name, perms, exp); sent as the subprotocol "bearer.<token>" */
  token?: string | null;
  /** display name for an anonymous user (the `name` query parameter) */
  name?: string | null;
  /** where the session and position are kept; default sessionStorage, null: memory only */
  storage?: KeyValueStorage | null;
  storageKey?: string;
  /** reconnect back-off: each wait is random in [cap/2, cap], cap = min(maxMs, minMs * 2^attempt) */
  backoff?: { minMs?: number; maxMs?: number };
  /** heartbeat period; default the welcome's heartbeatMs */
  heartbeatMs?: number;
  /** give up on an upgrade that has not completed after this long (default 15000) */
  connectTimeoutMs?: number;
  /** messages fetched to refill the view after the room's log changed (default 50) */
  initialHistory?: number;
  /** a WebSocket constructor (default globalThis.WebSocket) */
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

export class RingroomError extends Error {
  /** the broker's code (invalid_format, unknown_type, no_permission, too_large, rate_limited,
   *  storage_unavailable) or the client's: offline, disconnected, closed */
  code: string;
  requestId?: string;
  constructor(code: string, message?: string, requestId?: string);
}

export function describeClose(code: number): { reason: Reason; text: string };

export class RingroomClient {
  constructor(options: Options);
  readonly room: string;
  readonly state: ConnectionState;
  readonly reason: Reason | null;
  /** this connection's user (from the welcome) */
  readonly user: Welcome["user"] | null;
  readonly perms: Array<"read" | "write"> | null;
  readonly canWrite: boolean;
  readonly onlineUsers: Map<string, string>;
  readonly typingUsers: OnlineUser[];
  /** where a reconnect resumes: the room's epoch and the newest id seen */
  readonly position: { epoch: string | null; lastId: number };
  /** messages kept for a reload (oldest first, at most 200) */
  readonly messages: ChatMessage[];
  readonly stats: { connects: number; duplicates: number; gaps: number };

  on<K extends keyof Events>(type: K, fn: (ev: Events[K]) => void): () => void;
  off<K extends keyof Events>(type: K, fn: (ev: Events[K]) => void): void;

  connect(): void;
  close(): void;
  /** reconnect now instead of waiting for the back-off */
  retryNow(): void;
  /** use another token from the next connection on (a new user's session starts afresh) */
  setToken(token: string | null): void;
  /** drop the kept session, position and messages */
  forget(): void;

  /** resolved by the ack once stored; rejected by the error with the same requestId, or on a close */
  send(content: string, options?: { threadId?: string; requestId?: string }): Promise<{ id: number; requestId: string }>;
  history(options?: { beforeId?: number; limit?: number }): Promise<HistoryPage>;
  typing(isTyping: boolean): void;
  presence(status: string): void;
}

export default RingroomClient;

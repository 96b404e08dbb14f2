/*
 * The storage worker: durable rooms, sessions and per-room key/value data in
 * RocksDB, reached from the reactor cores without ever blocking them.
 *
 * DESIGN: a core fills a struct rr_store_req, hands it to rr_store_submit()
 * (a bounded queue; full → -EAGAIN, never a wait) and goes on with its loop.
 * One worker thread drains the queue, puts every write it found into ONE
 * RocksDB WriteBatch (group commit), writes it with the durability mode's
 * options, serves the reads, and posts each finished request back to the
 * submitting core's io_uring with IORING_OP_MSG_RING: the core reaps a CQE
 * whose user_data is rr_ud_ptr(RR_UD_STORE, req) and calls rr_store_complete()
 * on its own thread, which runs req->done. The worker never touches a core's
 * data; the core never touches RocksDB. This file is the only interface:
 * nothing outside src/persist/ includes rocksdb/c.h.
 *
 * Delivery: every accepted request completes exactly once. A completion the
 * kernel will not post to its core's ring (the ring refuses MSG_RING for a
 * while) is held by the worker and posted again after a short back-off;
 * completions for one core arrive in the order the worker finished them,
 * later ones waiting behind a held one. Held completions count against the
 * core's queue quota (rr_store_submit then says -EAGAIN).
 *
 * Ordering: requests are executed in submission order as seen by the queue,
 * except that within one drain all writes are committed before the reads of
 * that drain run. So a read sees every write submitted before it (by any
 * core), and may also see writes submitted just after it.
 *
 * Memory: everything the submitter points to from a request (room, key,
 * payload, session fields) is owned by the submitter and must stay valid and
 * unchanged until the completion callback runs. Results the worker produces
 * (read items, a fetched session or value) live in one allocation hanging off
 * req->out; the core releases it with rr_store_req_release() (a request may
 * then be reused).
 */
#ifndef RR_PERSIST_STORE_H
#define RR_PERSIST_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tsan.h"
#include "reactor/ud.h"

/* ---- limits (default, ceiling, why) ---- */

/* Room names: protocol.md allows 1..128 bytes; the key encoding has one
 * length byte, so the store accepts up to 255. */
#define RR_STORE_ROOM_MAX 255
/* Session ids and KV keys: short identifiers, not blobs. */
#define RR_STORE_KEY_MAX 1024
/* One stored value (message, attachment, kv value): --max-message-bytes
 * defaults to 1 MiB; 16 MiB bounds a WriteBatch of one request. */
#define RR_STORE_VALUE_MAX (16u << 20)
/* Writes gathered into one WriteBatch: bounds the batch's memory and the time
 * the first request of a burst waits for the last. */
#define RR_STORE_BATCH_MAX 1024
/* ... and payload bytes taken into one drain (a drain may exceed it by its
 * last request, at most RR_STORE_VALUE_MAX). */
#define RR_STORE_BATCH_BYTES_MAX (64u << 20)
/* READ_AFTER returns at most this many messages per request (the core asks
 * again with the last id it got when `more` is set). */
#define RR_STORE_READ_MAX 1000
/* ... and at most this many bytes of message data per request. */
#define RR_STORE_READ_BYTES_MAX (4u << 20)
/* READ_BEFORE (history): protocol.md caps `limit` at 100. */
#define RR_STORE_HISTORY_READ_MAX 100
/* KV_LIST: entries per request. */
#define RR_STORE_LIST_MAX 1000
/* Epoch strings: 16 lowercase hex digits (64 random bits) + NUL. */
#define RR_STORE_EPOCH_LEN 16

/* Defaults for struct rr_store_opts fields left at 0. */
#define RR_STORE_DEFAULT_HISTORY 1000		      /* messages kept per room */
#define RR_STORE_DEFAULT_TTL_MS (24ull * 3600 * 1000) /* message age limit */
#define RR_STORE_DEFAULT_QUEUE 4096		      /* queued requests per core */
#define RR_STORE_QUEUE_CEIL 65536		      /* per core */
#define RR_STORE_CORES_MAX 1024			      /* submitting cores */
#define RR_STORE_DEFAULT_TRIM_INTERVAL_MS 60000	      /* periodic retention sweep */

/* ---- opening ---- */

/* When an acknowledgement (a successful completion of a write) may be sent;
 * see src/persist/README.md for what survives what. After a stop that may
 * have lost acknowledged messages (any crash in memory mode, a reboot without
 * clean shutdown in async mode) every room gets a new epoch at the next open;
 * what survived stays readable and ids continue after it. */
enum rr_store_durability {
	RR_STORE_MEMORY = 0, /* in RocksDB's memtable, no WAL: survives a clean
			      * shutdown, not a crash */
	RR_STORE_ASYNC = 1,  /* written to the WAL (OS page cache): survives a
			      * process crash, not a power loss */
	RR_STORE_SYNC = 2,   /* WAL fsync'd before the ack: survives power loss */
};

struct rr_store_opts {
	const char *dir; /* data dir; created like mkdir -p */
	enum rr_store_durability durability;
	uint32_t history_size;	   /* messages kept per room; 0 → 1000 */
	uint64_t history_ttl_ms;   /* drop messages older; 0 → 24 h */
	uint32_t queue_capacity;   /* per core; 0 → 4096, max 65536 */
	uint32_t cores;		   /* submitting cores (req->core < cores); 0 → 1, max 1024 */
	uint32_t trim_interval_ms; /* periodic retention sweep; 0 → 60 s */
	bool rocksdb_info_log;	   /* RocksDB's own LOG in dir at WARN
				    * level (off: header only; see
				    * README.md, "Disk full") */
	const char *boot_id_path;  /* tests: NULL → /proc/sys/kernel/
				    * random/boot_id (tells a power loss
				    * from a process crash) */
};

struct rr_store;

/*
 * Open (creating if needed) the store in opts->dir and start its worker.
 * On success *out is set and 0 returned. On failure returns -errno and writes
 * a one-line reason into err (if errlen > 0), e.g. "data dir /x is in use by
 * another ringroom (RocksDB lock)" (-EBUSY), "cannot create data dir /x: ..."
 * (mkdir's errno), or RocksDB's own message (-EIO).
 * Blocking: call at start-up, never from a core's loop.
 */
int rr_store_open(struct rr_store **out, const struct rr_store_opts *opts, char *err,
		  size_t errlen);

/*
 * Stop accepting requests (submits made while this runs get -ESHUTDOWN), let
 * the worker complete every queued request, flush memtables (memory) or fsync
 * the WAL (async, sync), record a clean stop, close RocksDB and free the
 * store. Completions of the drained requests are still posted to the cores'
 * rings, so those rings must stay open until this returns (their CQEs can be
 * reaped afterwards). No core may call rr_store_submit once it has returned.
 * A completion whose ring still refuses it about 2 s after the queue is empty
 * (at once if the ring is gone: -EBADF, -EOWNERDEAD) is not delivered: its
 * results are freed (rr_store_req_release), its done() never runs, the
 * request memory stays the submitter's, and it is logged and counted in
 * post_abandoned. Bounded: returns within the drain plus about 2 s.
 * Blocking: call from the main thread at shutdown (SIGTERM). NULL is accepted.
 */
void rr_store_close(struct rr_store *s);

/* ---- requests ---- */

enum rr_store_op {
	/*
	 * Store one message. In: room, id (assigned by the core: exactly the
	 * room's last id + 1), ts_ms (0 → the worker's wall clock), data/len
	 * (opaque bytes). The room's last id is updated in the same batch.
	 * res: 0 | -ESTALE (id is not last id + 1: an earlier append of this
	 * room failed, or the room was never loaded; re-run ROOM_LOAD) |
	 * -EIO/-ENOSPC (the batch was not written).
	 */
	RR_STORE_APPEND = 1,
	/*
	 * Load a room's log position. In: room. Out: out.epoch, out.last_id
	 * (0 for an empty log), out.first_id (oldest retained message;
	 * last_id + 1 if none retained), out.created (the room was unknown and
	 * got a fresh random epoch, written under the durability mode before
	 * this completes; loads of one new room in the same drain all get that
	 * epoch, only the first has created set). res: 0 | -EIO | -ENOSPC.
	 */
	RR_STORE_ROOM_LOAD,
	/*
	 * Messages with id > `id`, oldest first. In: room, id, limit (0 or
	 * > RR_STORE_READ_MAX → RR_STORE_READ_MAX). Out: out.items/out.n_items
	 * (item.id, item.ts_ms, item.val/val_len), out.more (stopped at a limit
	 * and more may follow). res: 0 | -EIO.
	 */
	RR_STORE_READ_AFTER,
	/*
	 * History: the newest `limit` messages with id < `id` (id 0 → before
	 * the end of the log), returned OLDEST FIRST (protocol.md's order).
	 * In: room, id, limit (0 or > 100 → 100). Out: as READ_AFTER; out.more
	 * set if older messages remain. res: 0 | -EIO.
	 */
	RR_STORE_READ_BEFORE,
	/*
	 * Sessions by id. In: key/key_len = session id; PUT: session (fields
	 * encoded by the store). GET out: out.session (pointers into the result
	 * allocation). An expired session (expiry_ms != 0 and in the past) is
	 * reported -ENOENT. res: 0 | -ENOENT (GET) | -EIO.
	 * DEL of an absent session is 0.
	 */
	RR_STORE_SESSION_PUT,
	RR_STORE_SESSION_GET,
	RR_STORE_SESSION_DEL,
	/*
	 * Per-room key/value storage for handlers. In: room, key/key_len;
	 * PUT: data/len = value. GET out: out.val/out.val_len. LIST: keys of
	 * the room starting with key/key_len (may be empty), strictly after
	 * `after`/after_len if that is non-NULL (paging), at most limit
	 * (0 or > 1000 → 1000) in key order; out.items with item.key and
	 * item.val; out.more. res: 0 | -ENOENT (GET) | -EIO.
	 */
	RR_STORE_KV_GET,
	RR_STORE_KV_PUT,
	RR_STORE_KV_DEL,
	RR_STORE_KV_LIST,
	/*
	 * Retention for one room, run by the worker after the drain's reads:
	 * keep at most `limit` newest messages (0 → opts.history_size) and drop
	 * those older than ttl_ms (0 → opts.history_ttl_ms) by their ts_ms.
	 * Out: out.n_deleted (messages removed, counted by id range),
	 * out.first_id (new oldest retained id). res: 0 | -EIO.
	 * The worker also sweeps every room this way each trim_interval_ms.
	 */
	RR_STORE_TRIM,
	/*
	 * Barrier: completes after every request submitted before it, with the
	 * WAL fsync'd (async/sync) or memtables flushed to SST files (memory),
	 * so all earlier successful writes then survive a power loss.
	 * res: 0 | -EIO.
	 */
	RR_STORE_FLUSH,
};

/* One result row: a message (id, ts_ms, val) or a kv entry (key, val). */
struct rr_store_item {
	uint64_t id;
	uint64_t ts_ms;
	const uint8_t *key;
	uint32_t key_len;
	uint32_t val_len;
	const uint8_t *val;
};

/* A session record. For SESSION_PUT every pointer is the submitter's; after
 * SESSION_GET they point into the request's result allocation. */
struct rr_store_session {
	const char *room; /* room the session belongs to */
	uint32_t room_len;
	const uint8_t *attachment; /* handler's per-connection blob (opaque) */
	uint32_t attachment_len;
	const uint8_t *tags; /* opaque (e.g. NUL-separated tag list) */
	uint32_t tags_len;
	uint64_t last_id;	 /* last message id delivered to the client */
	uint64_t expiry_ms;	 /* wall clock ms; 0 = never */
	uint8_t resume_hash[32]; /* hash of the resume token (never the token) */
};

struct rr_store_req;
typedef void rr_store_done_fn(struct rr_store_req *req);

struct rr_store_req {
	/* ---- filled by the submitter, read-only for the worker ---- */
	enum rr_store_op op;
	uint32_t core;		/* submitting core, < opts.cores: per-core queue quota */
	int reply_ring_fd;	/* ring that gets the completion CQE; -1: done()
				 * runs on the worker thread (tools, start-up code) */
	rr_store_done_fn *done; /* called by rr_store_complete() */
	void *arg;		/* for the submitter (e.g. a room or conn) */

	const char *room;  /* APPEND, ROOM_LOAD, READ_*, KV_*, TRIM */
	uint32_t room_len; /* 1..RR_STORE_ROOM_MAX */
	uint64_t id;	   /* APPEND: the id; READ_AFTER: after; READ_BEFORE: before */
	uint64_t ts_ms;	   /* APPEND: message time (0 → now) */
	uint64_t ttl_ms;   /* TRIM: age limit (0 → default) */
	uint32_t limit;	   /* READ_*, KV_LIST, TRIM (keep count) */
	uint32_t key_len;
	const void *key;   /* KV_*: key (LIST: prefix); SESSION_*: session id */
	const void *after; /* KV_LIST: page after this key, or NULL */
	uint32_t after_len;
	uint32_t len;
	const void *data;			/* APPEND: message bytes; KV_PUT: value */
	const struct rr_store_session *session; /* SESSION_PUT */

	/* ---- filled by the worker before the completion is posted ---- */
	int res; /* 0 or -errno, per op above */
	struct {
		char epoch[RR_STORE_EPOCH_LEN + 1]; /* ROOM_LOAD, NUL-terminated */
		bool created;			    /* ROOM_LOAD */
		bool more;			    /* READ_*, KV_LIST */
		uint64_t last_id;		    /* ROOM_LOAD */
		uint64_t first_id;		    /* ROOM_LOAD, TRIM */
		uint64_t n_deleted;		    /* TRIM */
		struct rr_store_item *items;	    /* READ_*, KV_LIST */
		uint32_t n_items;
		uint32_t val_len;
		const uint8_t *val;		 /* KV_GET */
		struct rr_store_session session; /* SESSION_GET */
		void *_buf;			 /* the one result allocation */
	} out;

	/* ---- private to the store ---- */
	struct rr_store_req *_next; /* the worker's per-core post list */
};

/*
 * Queue a request. Never blocks on the worker: returns 0 (the completion will
 * arrive exactly once), -EAGAIN (this core's queue share, queued requests plus
 * completions held for its ring, is full: back-pressure, the request was not
 * taken), -EINVAL (a malformed request: bad op, room or
 * key length; nothing was queued) or -ESHUTDOWN (the store is closing).
 * Thread-safe; called from any core. req->res and req->out are reset here.
 */
int rr_store_submit(struct rr_store *s, struct rr_store_req *req);

/*
 * For the core, on a CQE with rr_ud_kind(cqe->user_data) == RR_UD_STORE:
 * req = rr_ud_to_ptr(cqe->user_data); rr_store_complete(req) runs req->done
 * (on the core's thread). The CQE's res is meaningless; the result is req->res.
 */
static inline void rr_store_complete(struct rr_store_req *req)
{
	RR_HB_ACQUIRE(req); /* published by the worker through MSG_RING */
	req->done(req);
}

/* Free the worker-allocated results of a completed request (out._buf) and
 * clear req->out. Safe to call twice and on requests with no results. */
void rr_store_req_release(struct rr_store_req *req);

/* ---- observability and test hooks ---- */

struct rr_store_stats {
	uint64_t submitted;	 /* accepted by rr_store_submit */
	uint64_t rejected;	 /* -EAGAIN from rr_store_submit */
	uint64_t completed;	 /* requests finished (posted, or held: post_pending) */
	uint64_t batches;	 /* WriteBatch writes attempted (group commits) */
	uint64_t batch_writes;	 /* write requests carried by those batches */
	uint64_t batch_failures; /* batches that failed (disk full, I/O error) */
	uint64_t reads;		 /* read requests served */
	uint64_t trimmed;	 /* messages removed by retention */
	uint64_t post_failures;	 /* posts a ring refused (kernel or injected error);
				  * the completion and those behind it were held */
	uint64_t post_retries;	 /* held completions delivered by a later retry */
	uint64_t post_abandoned; /* held completions given up at close (never run) */
	uint32_t post_pending;	 /* completions held for a refusing ring now */
	uint32_t queued;	 /* requests waiting now */
};

void rr_store_stats_get(struct rr_store *s, struct rr_store_stats *st);

/*
 * Test hook: the next `count` write batches fail with `err` (-EIO or
 * -ENOSPC) without writing anything, exactly as a real write error does.
 */
void rr_store_inject_fault(struct rr_store *s, int err, uint32_t count);

/*
 * Test hook: after `skip` more completions are posted, the next `count`
 * attempts to post one fail with `err` (e.g. -EOVERFLOW, -EBUSY) as if the
 * core's ring had refused them, so the completion is held and retried.
 */
void rr_store_inject_post_fault(struct rr_store *s, int err, uint32_t skip, uint32_t count);

/*
 * Test and ops hook: a paused worker takes nothing from the queue (submits
 * still succeed up to the quota), so a test can queue a burst and then watch
 * it go out in few batches. rr_store_close() resumes a paused worker.
 */
void rr_store_pause(struct rr_store *s, bool paused);

const char *rr_store_durability_name(enum rr_store_durability d);
/* "memory" | "async" | "sync" → 0, else -EINVAL (for the --durability flag). */
int rr_store_durability_parse(const char *name, enum rr_store_durability *out);

#endif

/*
 * The storage worker's private half: the struct every store_*.c file shares,
 * its limits, and the functions one file calls in another. Only src/persist/
 * includes this header, and with it rocksdb/c.h; the rest of ringroom knows
 * the store through store.h alone.
 *
 * DESIGN: the files follow one request's path through the worker.
 *   store_db.c      open and close: options, column families, the state
 *                   record and epochs after a loss, reopening after a write
 *                   error
 *   store_worker.c  the queue (submit, quota, pause), the worker thread's
 *                   loop, one drain's phases in order
 *   store_commit.c  group commit: one WriteBatch per drain, gap-free ids,
 *                   room creation, the FLUSH barrier
 *   store_read.c    reads: room log position, message pages, sessions, kv,
 *                   into one result allocation per request
 *   store_retain.c  retention: TRIM requests and the periodic sweep
 *   store_post.c    completions back to the cores with MSG_RING; a post the
 *                   kernel refuses is retried, never dropped
 * Fields are grouped by who may touch them: the queue under mu (any thread),
 * the worker's own state (the worker thread only, or the closing thread
 * once the worker has been joined), and statistics (atomics).
 */
#ifndef RR_PERSIST_STORE_INT_H
#define RR_PERSIST_STORE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <liburing.h>
#include <rocksdb/c.h>

#include "persist/keys.h"
#include "persist/store.h"

enum store_cf {
	CF_DEFAULT,
	CF_MESSAGES,
	CF_ROOMS,
	CF_SESSIONS,
	CF_KV,
	CF_ALARMS,
	CF_COUNT,
};

#define BOOT_ID_LEN 36 /* /proc/sys/kernel/random/boot_id, a UUID */
/* MSG_RING posts submitted at once: one chunk of one core's completions */
#define POST_RING_ENTRIES 256
/* A core whose ring refused a post is tried again after this back-off,
 * doubled at each refusal: short, because the usual cause (a ring not
 * reaping for a moment) clears quickly, and bounded, so a completion is
 * late by at most POST_BACKOFF_MAX_MS once its ring takes it again. */
#define POST_BACKOFF_MIN_MS 1
#define POST_BACKOFF_MAX_MS 64
/* rr_store_close keeps retrying posts this long after the queue is empty
 * before it gives up on a ring that still refuses (see store_post.c) */
#define POST_CLOSE_WAIT_MS 2000
/* open-addressing table of the rooms appended to in one batch */
#define ROOMTAB_SLOTS (2 * RR_STORE_BATCH_MAX)

/* One room as seen by the current drain (store_commit.c). */
struct room_last {
	const char *room;
	uint32_t room_len;
	struct rr_store_req *creator; /* ROOM_LOAD phase: the load creating it */
	int err;		      /* the Get failed: every append of the room fails */
	bool dirty;		      /* an append of this batch advanced last */
	uint64_t last;		      /* last id including this batch's accepted appends */
};

/* Result builder: rows collected with offsets into a growing byte buffer,
 * turned into one allocation (items array + bytes) at the end. */
struct rb_row {
	uint64_t id, ts_ms;
	uint32_t key_off, key_len, val_off, val_len;
};

/* Completions of one core waiting to be posted, oldest first (linked
 * through req->_next). Non-empty between drains only while its ring refuses
 * posts: everything behind a refused completion waits with it, so a core
 * sees its completions in the order the worker finished them. */
struct post_list {
	struct rr_store_req *head, *tail;
	uint32_t len;
	uint32_t charged;     /* of len, counted against the core's queue quota */
	uint32_t backoff_ms;  /* 0: the last attempt succeeded */
	uint64_t retry_at_ms; /* monotonic; next attempt while backing off */
	int err;	      /* the last refusal */
	int ring_fd;	      /* ... and the ring that refused (for the log) */
	uint64_t refusals;    /* in the current burst, for the recovery log line */
};

struct rr_store {
	struct rr_store_opts opts;
	char *dir;

	rocksdb_t *db;
	rocksdb_options_t *dbopts;
	rocksdb_options_t *cfopts[CF_COUNT];
	rocksdb_column_family_handle_t *cf[CF_COUNT];
	rocksdb_writeoptions_t *wopts;	    /* the durability mode's */
	rocksdb_writeoptions_t *wopts_sync; /* bookkeeping that must be on disk */
	rocksdb_writeoptions_t *wopts_trim; /* retention: the mode's WAL, never fsync */
	rocksdb_readoptions_t *ropts;
	rocksdb_flushoptions_t *fopts;
	rocksdb_writebatch_t *wb;

	/* ---- queue: guarded by mu ---- */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct rr_store_req **q;
	uint32_t q_cap, q_head, q_len;
	uint32_t *core_len; /* queued + held on a post list, per core */
	bool stopping, paused;
	int fault_err;
	uint32_t fault_count;
	int post_fault_err;
	uint32_t post_fault_skip, post_fault_count; /* count also read atomically */

	pthread_t thread;

	/* ---- worker-only state ---- */
	struct rr_store_req *drain[RR_STORE_BATCH_MAX];
	struct room_last rooms[RR_STORE_BATCH_MAX];
	uint16_t roomtab[ROOMTAB_SLOTS]; /* index + 1; 0 = empty */
	uint32_t n_rooms;
	struct rb_row *rows;
	uint8_t *bytes;
	size_t bytes_cap;
	bool failing; /* inside a burst of failed writes */
	uint64_t burst_failures;
	bool need_reopen, reopen_logged;
	int down_err; /* what writes get while a reopen waits */
	uint64_t reopen_at_ms, reopen_backoff_ms;
	uint64_t next_sweep_ms;
	char boot_id[BOOT_ID_LEN + 1];
	uint8_t sweep_cursor[RR_KEYS_MAX];
	size_t sweep_cursor_len;
	uint8_t session_cursor[RR_STORE_KEY_MAX];
	size_t session_cursor_len;

	/* ---- posting: worker-only (store_post.c) ---- */
	struct io_uring post;
	struct post_list *posts; /* one per core */
	uint32_t post_pending;	 /* requests on every post list */
	uint64_t post_next_ms;	 /* earliest retry_at_ms of a non-empty list */
	uint64_t close_by_ms;	 /* closing: give up on refusing rings then */

	/* ---- statistics: atomics ---- */
	struct rr_store_stats st;
};

#define STAT_ADD(s, field, n) __atomic_fetch_add(&(s)->st.field, (n), __ATOMIC_RELAXED)

/* ---- store_db.c ---- */

/* One line on stderr, "ringroom: store: ...". */
void rr_store_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RocksDB reports errors as strings: -ENOSPC for a full disk, else -EIO
 * (0 for NULL). */
int rr_store_rocks_errno(const char *msg);
/* 16 random lowercase hex digits and a NUL. */
void rr_store_random_epoch(char epoch[RR_STORE_EPOCH_LEN + 1]);
/* Before a write: reopen RocksDB if a write error left it read-only and the
 * back-off allows. 0 when writable, else the error writes should get. */
int rr_store_reopen_if_needed(struct rr_store *s);

/* ---- store_worker.c ---- */

void *rr_store_worker_main(void *arg);

/* ---- store_commit.c ---- */

/* APPEND, SESSION_PUT/DEL, KV_PUT/DEL: the ops that go into the WriteBatch. */
bool rr_store_op_is_write(enum rr_store_op op);

/* Every write of the drain in one WriteBatch, written once. */
void rr_store_write_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n);
/* The drain's ROOM_LOADs; new rooms get their epoch records in one batch. */
void rr_store_room_load_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n);
/* The drain's FLUSH barriers, after everything else of the drain. */
void rr_store_flush_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n);
/* Make every earlier write survive a power loss: fsync the WAL (async,
 * sync) or flush the memtables (memory). NULL or RocksDB's message. */
char *rr_store_make_durable(struct rr_store *s);

/* ---- store_read.c ---- */

/* The drain's READ_*, SESSION_GET, KV_GET and KV_LIST. */
void rr_store_read_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n);
/* Fill a ROOM_LOAD's results from disk; *found is false for an unknown room. */
int rr_store_load_room(struct rr_store *s, struct rr_store_req *req, bool *found);
int rr_store_get_last_id(struct rr_store *s, const char *room, size_t room_len, uint64_t *last,
			 bool *found);
/* Oldest retained id of a room, or 0 if it has no messages. */
int rr_store_first_id(struct rr_store *s, const char *room, size_t room_len, uint64_t *first);
/* An iterator over the messages of one room; ro, lo and hi must outlive it. */
rocksdb_iterator_t *rr_store_room_iter(struct rr_store *s, rocksdb_readoptions_t *ro,
				       const char *room, size_t room_len, uint8_t *lo, int *lol,
				       uint8_t *hi);
/* 0, or -EIO (logged) if the iterator stopped on an error. */
int rr_store_iter_error(rocksdb_iterator_t *it);

/* ---- store_retain.c ---- */

/* The drain's TRIMs, in one batch. */
void rr_store_trim_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n);
/* One bounded step of the periodic sweep; true when it reached the end. */
bool rr_store_sweep_step(struct rr_store *s);

/* ---- store_post.c ---- */

int rr_store_post_init(struct rr_store *s);
void rr_store_post_free(struct rr_store *s);
/* Hand the drain's finished requests to their cores, in drain order: a
 * request without a ring completes here (done() on the worker), the others
 * go on their core's post list for the next rr_store_post_flush. */
void rr_store_post_add(struct rr_store *s, struct rr_store_req **reqs, uint32_t n);
/* Post every list whose back-off has passed. closing: the store is closing,
 * so a ring that is gone for good (-EBADF, -EOWNERDEAD) is given up at once. */
void rr_store_post_flush(struct rr_store *s, bool closing);
/* Closing, once retrying is over: release every request still held (their
 * results are freed, done never runs) and log each core's count. */
void rr_store_post_abandon(struct rr_store *s);

#endif

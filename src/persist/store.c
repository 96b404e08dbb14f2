/*
 * The storage worker (interface and ordering rules in store.h; durability
 * modes in README.md). The only file of ringroom that includes rocksdb/c.h.
 *
 * DESIGN: one worker thread, one bounded FIFO of request pointers guarded by
 * a mutex (cores hold it for a few instructions; a full queue is -EAGAIN, not
 * a wait), with a per-core quota so one busy core cannot take every slot from
 * the others. The worker takes up to RR_STORE_BATCH_MAX requests per drain and
 * runs them in phases: every write of the drain goes into one WriteBatch
 * written once (group commit), then the reads, then retention, then the
 * barrier, and finally each request is posted to its core's ring with
 * IORING_OP_MSG_RING from the worker's own small ring.
 *
 * APPEND keeps ids gap-free: the worker checks each id against the room's
 * stored last id (one Get per room per batch) and refuses a gap with
 * -ESTALE, so a core that lost an append to a disk error learns it must
 * reload the room instead of silently numbering past a hole.
 *
 * A failed write puts RocksDB into a read-only background-error state. The
 * worker fails that batch, logs once per burst, and reopens the database
 * before the next write (with back-off while the reopen itself fails), so
 * writes succeed again once the disk has room.
 */
#include "persist/store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>
#include <rocksdb/c.h>

#include "persist/keys.h"

enum store_cf {
	CF_DEFAULT,
	CF_MESSAGES,
	CF_ROOMS,
	CF_SESSIONS,
	CF_KV,
	CF_ALARMS,
	CF_COUNT,
};

static const char *const cf_names[CF_COUNT] = {
    "default", "messages", "rooms", "sessions", "kv", "alarms",
};

/* rooms-CF bookkeeping key (first byte 0: never a room key); value in
 * write_state(). */
static const uint8_t state_key[] = {0, 's', 't', 'a', 't', 'e'};

#define BOOT_ID_LEN 36 /* /proc/sys/kernel/random/boot_id, a UUID */
#define POST_RING_ENTRIES 256
/* rooms visited (and sessions checked) per step of the periodic sweep: keeps
 * each step short so queued requests are not held up behind it. */
#define SWEEP_ROOMS_STEP 256
#define SWEEP_SESSIONS_STEP 1024
/* TTL trimming walks forward from the oldest message; bound one room's walk */
#define TRIM_SCAN_MAX 100000
#define REOPEN_BACKOFF_MIN_MS 50
#define REOPEN_BACKOFF_MAX_MS 2000
/* free space a reopen after a write error waits for: RocksDB writes its
 * OPTIONS file (~40 KiB for six column families), a MANIFEST and a new WAL */
#define RR_STORE_REOPEN_FREE_MIN (1u << 20)
/* open-addressing table of the rooms appended to in one batch */
#define ROOMTAB_SLOTS (2 * RR_STORE_BATCH_MAX)

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
	uint32_t *core_len;
	bool stopping, paused;
	int fault_err;
	uint32_t fault_count;

	pthread_t thread;
	struct io_uring post;

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

	/* ---- statistics: atomics ---- */
	struct rr_store_stats st;
};

#define STAT_ADD(s, field, n) __atomic_fetch_add(&(s)->st.field, (n), __ATOMIC_RELAXED)

static void store_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void store_log(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ringroom: store: %s\n", line);
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* RocksDB reports errors as strings; map the ones a caller can act on. */
static int rocks_errno(const char *msg)
{
	if (msg == NULL)
		return 0;
	if (strcasestr(msg, "no space") != NULL || strcasestr(msg, "nospace") != NULL)
		return -ENOSPC;
	return -EIO;
}

/* ---- names ---- */

const char *rr_store_durability_name(enum rr_store_durability d)
{
	switch (d) {
	case RR_STORE_MEMORY:
		return "memory";
	case RR_STORE_ASYNC:
		return "async";
	case RR_STORE_SYNC:
		return "sync";
	}
	return "?";
}

int rr_store_durability_parse(const char *name, enum rr_store_durability *out)
{
	for (int d = RR_STORE_MEMORY; d <= RR_STORE_SYNC; d++) {
		if (strcmp(name, rr_store_durability_name((enum rr_store_durability)d)) == 0) {
			*out = (enum rr_store_durability)d;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- opening ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* mkdir -p: create each missing component; an existing directory is fine. */
static int mkdir_p(const char *dir)
{
	char path[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		char c = path[i];

		path[i] = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return -errno;
		path[i] = c;
	}
	struct stat stbuf;

	if (stat(dir, &stbuf) < 0)
		return -errno;
	return S_ISDIR(stbuf.st_mode) ? 0 : -ENOTDIR;
}

static void random_epoch(char epoch[RR_STORE_EPOCH_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t r[RR_STORE_EPOCH_LEN / 2];

	/* getrandom of 8 bytes never returns short once the pool is ready;
	 * fall back to time-derived bits rather than fail a room load */
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		uint64_t t = mono_ms() ^ (wall_ms() << 20) ^ (uint64_t)(uintptr_t)epoch;

		rr_keys_put_be64(r, t * 0x9e3779b97f4a7c15ull);
	}
	for (size_t i = 0; i < sizeof(r); i++) {
		epoch[2 * i] = hex[r[i] >> 4];
		epoch[2 * i + 1] = hex[r[i] & 15];
	}
	epoch[RR_STORE_EPOCH_LEN] = '\0';
}

static void db_close(struct rr_store *s)
{
	if (s->db == NULL)
		return;
	for (int i = 0; i < CF_COUNT; i++) {
		if (s->cf[i] != NULL)
			rocksdb_column_family_handle_destroy(s->cf[i]);
		s->cf[i] = NULL;
	}
	rocksdb_close(s->db);
	s->db = NULL;
}

/* Open RocksDB with every column family; on failure *errmsg is RocksDB's
 * message (caller frees with rocksdb_free). */
static int db_open(struct rr_store *s, char **errmsg)
{
	const rocksdb_options_t *cfo[CF_COUNT];

	for (int i = 0; i < CF_COUNT; i++)
		cfo[i] = s->cfopts[i];
	*errmsg = NULL;
	s->db =
	    rocksdb_open_column_families(s->dbopts, s->dir, CF_COUNT, cf_names, cfo, s->cf, errmsg);
	if (*errmsg != NULL) {
		s->db = NULL;
		return -EIO;
	}
	return 0;
}

/*
 * Acknowledged messages may be gone after an unclean stop: in memory mode
 * after any crash (they lived in memtables), in async mode after a power loss
 * or kernel crash (the WAL was in the page cache). The ids the core handed out
 * for them would then be handed out again, and a client resuming with
 * (epoch, id) would take the new messages for ones it has seen. So every room
 * gets a new epoch (protocol.md: the epoch changes when the log is lost);
 * what survived stays readable and numbering continues after it. Runs at open
 * only, before any core submits; bounded by the number of rooms.
 */
static int rotate_epochs(struct rr_store *s, const char *why, char *err, size_t errlen)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_ROOMS]);
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	uint64_t n = 0, now = wall_ms();
	char *emsg = NULL;
	int ret = 0;

	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, room_len;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		const char *room;
		char tag, epoch[RR_STORE_EPOCH_LEN + 1];
		uint8_t rec[RR_KEYS_EPOCH_REC];

		if (rr_keys_room_rec_decode(k, klen, &room, &room_len, &tag) < 0 ||
		    tag != RR_KEYS_ROOM_EPOCH)
			continue;
		random_epoch(epoch);
		rr_keys_epoch_encode(rec, epoch, now);
		rocksdb_writebatch_put_cf(wb, s->cf[CF_ROOMS], (const char *)k, klen,
					  (const char *)rec, sizeof(rec));
		n++;
	}
	rocksdb_iter_get_error(it, &emsg);
	rocksdb_iter_destroy(it);
	if (emsg == NULL)
		rocksdb_write(s->db, s->wopts_sync, wb, &emsg);
	rocksdb_writebatch_destroy(wb);
	if (emsg != NULL) {
		set_err(err, errlen, "giving rooms new epochs after %s: %s", why, emsg);
		rocksdb_free(emsg);
		ret = -EIO;
	} else if (n > 0) {
		store_log("%s: %llu rooms get new epochs (acknowledged messages may be lost)", why,
			  (unsigned long long)n);
	}
	return ret;
}

/* The kernel's boot id: tells a process crash (same boot) from a power loss
 * or kernel crash (new boot). Empty if unreadable. */
static void read_boot_id(const char *path, char id[BOOT_ID_LEN + 1])
{
	FILE *f = fopen(path ? path : "/proc/sys/kernel/random/boot_id", "re");
	size_t n = 0;

	if (f != NULL) {
		n = fread(id, 1, BOOT_ID_LEN, f);
		fclose(f);
	}
	id[n == BOOT_ID_LEN ? BOOT_ID_LEN : 0] = '\0';
}

/* state record: [2][clean 0/1][durability][boot id, BOOT_ID_LEN bytes] */
static int write_state(struct rr_store *s, bool clean, char **emsg)
{
	uint8_t v[3 + BOOT_ID_LEN] = {2, clean ? 1 : 0, (uint8_t)s->opts.durability};

	memcpy(v + 3, s->boot_id, BOOT_ID_LEN);
	rocksdb_put_cf(s->db, s->wopts_sync, s->cf[CF_ROOMS], (const char *)state_key,
		       sizeof(state_key), (const char *)v, sizeof(v), emsg);
	return *emsg == NULL ? 0 : -EIO;
}

/* Read the previous run's state record, rotate epochs if that run may have
 * lost acknowledged messages, then mark this run as running (dirty). */
static int check_state(struct rr_store *s, char *err, size_t errlen)
{
	char *emsg = NULL;
	size_t vlen = 0;
	char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_ROOMS], (const char *)state_key,
				 sizeof(state_key), &vlen, &emsg);
	const char *why = NULL;

	if (emsg != NULL) {
		set_err(err, errlen, "reading store state: %s", emsg);
		rocksdb_free(emsg);
		return -EIO;
	}
	read_boot_id(s->opts.boot_id_path, s->boot_id);
	if (v != NULL && vlen == 3 + BOOT_ID_LEN && v[0] == 2 && v[1] == 0) {
		bool same_boot =
		    s->boot_id[0] != '\0' && memcmp(v + 3, s->boot_id, BOOT_ID_LEN) == 0;

		if (v[2] == RR_STORE_MEMORY)
			why = "an unclean stop in memory durability";
		else if (v[2] == RR_STORE_ASYNC && !same_boot)
			why = "a power loss or kernel crash in async durability";
	}
	rocksdb_free(v);
	if (why != NULL) {
		int ret = rotate_epochs(s, why, err, errlen);

		if (ret < 0)
			return ret;
	}
	if (write_state(s, false, &emsg) < 0) {
		set_err(err, errlen, "writing store state: %s", emsg);
		rocksdb_free(emsg);
		return -EIO;
	}
	return 0;
}

static void *worker_main(void *arg);

static void free_store(struct rr_store *s)
{
	db_close(s);
	for (int i = 0; i < CF_COUNT; i++) {
		if (s->cfopts[i] != NULL)
			rocksdb_options_destroy(s->cfopts[i]);
	}
	if (s->dbopts != NULL)
		rocksdb_options_destroy(s->dbopts);
	if (s->wopts != NULL)
		rocksdb_writeoptions_destroy(s->wopts);
	if (s->wopts_sync != NULL)
		rocksdb_writeoptions_destroy(s->wopts_sync);
	if (s->wopts_trim != NULL)
		rocksdb_writeoptions_destroy(s->wopts_trim);
	if (s->ropts != NULL)
		rocksdb_readoptions_destroy(s->ropts);
	if (s->fopts != NULL)
		rocksdb_flushoptions_destroy(s->fopts);
	if (s->wb != NULL)
		rocksdb_writebatch_destroy(s->wb);
	free(s->q);
	free(s->core_len);
	free(s->rows);
	free(s->bytes);
	free(s->dir);
	free(s);
}

static int probe_msg_ring(void)
{
	struct io_uring_probe *p = io_uring_get_probe();

	if (p == NULL)
		return -ENOSYS;
	bool ok = io_uring_opcode_supported(p, IORING_OP_MSG_RING);

	io_uring_free_probe(p);
	return ok ? 0 : -ENOSYS;
}

int rr_store_open(struct rr_store **out, const struct rr_store_opts *opts, char *err, size_t errlen)
{
	struct rr_store *s;
	char *emsg = NULL;
	int ret;

	assert(out != NULL && opts != NULL);
	*out = NULL;
	if (opts->dir == NULL || opts->dir[0] == '\0') {
		set_err(err, errlen, "no data dir given");
		return -EINVAL;
	}
	if (opts->durability > RR_STORE_SYNC || opts->queue_capacity > RR_STORE_QUEUE_CEIL ||
	    opts->cores > RR_STORE_CORES_MAX) {
		set_err(err, errlen,
			"invalid store options (durability %d, queue %u of at most %u, cores %u of "
			"at most %u)",
			(int)opts->durability, opts->queue_capacity, RR_STORE_QUEUE_CEIL,
			opts->cores, RR_STORE_CORES_MAX);
		return -EINVAL;
	}
	if (probe_msg_ring() < 0) {
		set_err(err, errlen, "kernel lacks IORING_OP_MSG_RING (needs 5.18+)");
		return -ENOSYS;
	}
	ret = mkdir_p(opts->dir);
	if (ret < 0) {
		set_err(err, errlen, "cannot create data dir %s: %s", opts->dir, strerror(-ret));
		return ret;
	}

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto fail_nomem;
	s->opts = *opts;
	if (s->opts.history_size == 0)
		s->opts.history_size = RR_STORE_DEFAULT_HISTORY;
	if (s->opts.history_ttl_ms == 0)
		s->opts.history_ttl_ms = RR_STORE_DEFAULT_TTL_MS;
	if (s->opts.queue_capacity == 0)
		s->opts.queue_capacity = RR_STORE_DEFAULT_QUEUE;
	if (s->opts.cores == 0)
		s->opts.cores = 1;
	if (s->opts.trim_interval_ms == 0)
		s->opts.trim_interval_ms = RR_STORE_DEFAULT_TRIM_INTERVAL_MS;
	s->dir = strdup(opts->dir);
	s->opts.dir = s->dir;
	s->q_cap = s->opts.queue_capacity * s->opts.cores;
	s->q = calloc(s->q_cap, sizeof(*s->q));
	s->core_len = calloc(s->opts.cores, sizeof(*s->core_len));
	s->rows =
	    calloc(RR_STORE_READ_MAX > RR_STORE_LIST_MAX ? RR_STORE_READ_MAX : RR_STORE_LIST_MAX,
		   sizeof(*s->rows));
	if (s->dir == NULL || s->q == NULL || s->core_len == NULL || s->rows == NULL)
		goto fail_nomem;

	s->dbopts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(s->dbopts, 1);
	rocksdb_options_set_create_missing_column_families(s->dbopts, 1);
	/* memory mode has no WAL to make column families agree after a crash;
	 * flushing them together keeps messages and last ids consistent */
	rocksdb_options_set_atomic_flush(s->dbopts, 1);
	rocksdb_options_set_max_background_jobs(s->dbopts, 2);
	rocksdb_options_set_keep_log_file_num(s->dbopts, 4);
	rocksdb_options_set_max_log_file_size(s->dbopts, 4 << 20);
	/* Debian's librocksdb keeps its assertions on, and its info-LOG writer
	 * asserts when written to again after a failed write: on a full disk
	 * the LOG alone would abort the broker. At HEADER level RocksDB writes
	 * its LOG only while opening (which maybe_reopen does only with free
	 * space); the worker logs every RocksDB error it sees itself. */
	rocksdb_options_set_info_log_level(s->dbopts, opts->rocksdb_info_log ? 2 /* WARN */
									     : 5 /* HEADER */);
	for (int i = 0; i < CF_COUNT; i++)
		s->cfopts[i] = rocksdb_options_create();

	s->wopts = rocksdb_writeoptions_create();
	rocksdb_writeoptions_disable_WAL(s->wopts, opts->durability == RR_STORE_MEMORY);
	rocksdb_writeoptions_set_sync(s->wopts, opts->durability == RR_STORE_SYNC);
	s->wopts_trim = rocksdb_writeoptions_create();
	rocksdb_writeoptions_disable_WAL(s->wopts_trim, opts->durability == RR_STORE_MEMORY);
	s->wopts_sync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(s->wopts_sync, 1);
	s->ropts = rocksdb_readoptions_create();
	s->fopts = rocksdb_flushoptions_create();
	rocksdb_flushoptions_set_wait(s->fopts, 1);
	s->wb = rocksdb_writebatch_create();

	ret = db_open(s, &emsg);
	if (ret < 0) {
		/* RocksDB 7.8 says "While lock file: DIR/LOCK: ..." for another
		 * process, "lock hold by current process" for this one */
		if (strstr(emsg, "While lock file") != NULL ||
		    strstr(emsg, "lock hold by current process") != NULL) {
			set_err(err, errlen,
				"data dir %s is in use by another ringroom (RocksDB lock)", s->dir);
			ret = -EBUSY;
		} else {
			set_err(err, errlen, "cannot open store in %s: %s", s->dir, emsg);
		}
		rocksdb_free(emsg);
		goto fail;
	}
	ret = check_state(s, err, errlen);
	if (ret < 0)
		goto fail;

	ret = io_uring_queue_init(POST_RING_ENTRIES, &s->post, 0);
	if (ret < 0) {
		set_err(err, errlen, "store worker io_uring: %s", strerror(-ret));
		goto fail;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->next_sweep_ms = mono_ms() + s->opts.trim_interval_ms;
	ret = -pthread_create(&s->thread, NULL, worker_main, s);
	if (ret < 0) {
		set_err(err, errlen, "store worker thread: %s", strerror(-ret));
		goto fail_thread;
	}
	*out = s;
	return 0;

fail_thread:
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	io_uring_queue_exit(&s->post);
fail:
	free_store(s);
	return ret;
fail_nomem:
	set_err(err, errlen, "out of memory opening the store");
	if (s != NULL)
		free_store(s);
	return -ENOMEM;
}

/* ---- submission ---- */

static bool op_has_room(enum rr_store_op op)
{
	return op != RR_STORE_SESSION_PUT && op != RR_STORE_SESSION_GET &&
	       op != RR_STORE_SESSION_DEL && op != RR_STORE_FLUSH;
}

static int validate(const struct rr_store_req *req)
{
	if (req->op < RR_STORE_APPEND || req->op > RR_STORE_FLUSH)
		return -EINVAL;
	if (op_has_room(req->op) &&
	    (req->room == NULL || req->room_len == 0 || req->room_len > RR_STORE_ROOM_MAX))
		return -EINVAL;
	if (req->len > RR_STORE_VALUE_MAX || (req->len > 0 && req->data == NULL))
		return -EINVAL;
	if (req->key_len > RR_STORE_KEY_MAX || (req->key_len > 0 && req->key == NULL) ||
	    req->after_len > RR_STORE_KEY_MAX || (req->after_len > 0 && req->after == NULL))
		return -EINVAL;
	switch (req->op) {
	case RR_STORE_APPEND:
		return req->id == 0 ? -EINVAL : 0;
	case RR_STORE_SESSION_PUT:
		if (req->session == NULL || rr_keys_session_size(req->session) > RR_STORE_VALUE_MAX)
			return -EINVAL;
		/* fallthrough */
	case RR_STORE_SESSION_GET:
	case RR_STORE_SESSION_DEL:
	case RR_STORE_KV_GET:
	case RR_STORE_KV_PUT:
	case RR_STORE_KV_DEL:
		return req->key_len == 0 ? -EINVAL : 0;
	default:
		return 0;
	}
}

int rr_store_submit(struct rr_store *s, struct rr_store_req *req)
{
	assert(s != NULL && req != NULL);
	assert(req->done != NULL && req->core < s->opts.cores);

	int ret = validate(req);

	if (ret < 0)
		return ret;
	req->res = 0;
	memset(&req->out, 0, sizeof(req->out));

	pthread_mutex_lock(&s->mu);
	if (s->stopping) {
		ret = -ESHUTDOWN;
	} else if (s->core_len[req->core] >= s->opts.queue_capacity) {
		ret = -EAGAIN;
	} else {
		s->q[(s->q_head + s->q_len) % s->q_cap] = req;
		s->q_len++;
		s->core_len[req->core]++;
		/* only an idle worker needs the wake-up; a busy one finds it */
		if (s->q_len == 1)
			pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	if (ret == -EAGAIN)
		STAT_ADD(s, rejected, 1);
	else if (ret == 0)
		STAT_ADD(s, submitted, 1);
	return ret;
}

void rr_store_req_release(struct rr_store_req *req)
{
	free(req->out._buf);
	memset(&req->out, 0, sizeof(req->out));
}

void rr_store_stats_get(struct rr_store *s, struct rr_store_stats *st)
{
	st->submitted = __atomic_load_n(&s->st.submitted, __ATOMIC_RELAXED);
	st->rejected = __atomic_load_n(&s->st.rejected, __ATOMIC_RELAXED);
	st->completed = __atomic_load_n(&s->st.completed, __ATOMIC_RELAXED);
	st->batches = __atomic_load_n(&s->st.batches, __ATOMIC_RELAXED);
	st->batch_writes = __atomic_load_n(&s->st.batch_writes, __ATOMIC_RELAXED);
	st->batch_failures = __atomic_load_n(&s->st.batch_failures, __ATOMIC_RELAXED);
	st->reads = __atomic_load_n(&s->st.reads, __ATOMIC_RELAXED);
	st->trimmed = __atomic_load_n(&s->st.trimmed, __ATOMIC_RELAXED);
	st->post_failures = __atomic_load_n(&s->st.post_failures, __ATOMIC_RELAXED);
	pthread_mutex_lock(&s->mu);
	st->queued = s->q_len;
	pthread_mutex_unlock(&s->mu);
}

void rr_store_inject_fault(struct rr_store *s, int err, uint32_t count)
{
	assert(err < 0);
	pthread_mutex_lock(&s->mu);
	s->fault_err = err;
	s->fault_count = count;
	pthread_mutex_unlock(&s->mu);
}

void rr_store_pause(struct rr_store *s, bool paused)
{
	pthread_mutex_lock(&s->mu);
	s->paused = paused;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* ---- result builder ---- */

static int rb_reserve(struct rr_store *s, size_t used, size_t more)
{
	if (used + more <= s->bytes_cap)
		return 0;
	size_t cap = s->bytes_cap ? s->bytes_cap : 64 * 1024;

	while (cap < used + more)
		cap *= 2;
	uint8_t *b = realloc(s->bytes, cap);

	if (b == NULL)
		return -ENOMEM;
	s->bytes = b;
	s->bytes_cap = cap;
	return 0;
}

/* Turn rows[0..n) and bytes[0..used) into req->out.items (one allocation). */
static int rb_finish(struct rr_store *s, struct rr_store_req *req, uint32_t n, size_t used,
		     bool reverse)
{
	size_t head = (size_t)n * sizeof(struct rr_store_item);
	uint8_t *buf = malloc(head + used + 1);

	if (buf == NULL)
		return -ENOMEM;
	struct rr_store_item *items = (struct rr_store_item *)buf;
	uint8_t *data = buf + head;

	if (used > 0)
		memcpy(data, s->bytes, used);
	for (uint32_t i = 0; i < n; i++) {
		const struct rb_row *r = &s->rows[reverse ? n - 1 - i : i];

		items[i] = (struct rr_store_item){
		    .id = r->id,
		    .ts_ms = r->ts_ms,
		    .key = r->key_len ? data + r->key_off : NULL,
		    .key_len = r->key_len,
		    .val = data + r->val_off,
		    .val_len = r->val_len,
		};
	}
	req->out._buf = buf;
	req->out.items = items;
	req->out.n_items = n;
	return 0;
}

/* ---- reads ---- */

static int get_last_id(struct rr_store *s, const char *room, size_t room_len, uint64_t *last,
		       bool *found)
{
	uint8_t k[RR_KEYS_MAX];
	int kl = rr_keys_room_rec(k, sizeof(k), room, room_len, RR_KEYS_ROOM_LAST);
	char *emsg = NULL;
	size_t vlen = 0;
	char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_ROOMS], (const char *)k, (size_t)kl,
				 &vlen, &emsg);

	if (emsg != NULL) {
		store_log("reading last id: %s", emsg);
		rocksdb_free(emsg);
		return -EIO;
	}
	*found = v != NULL;
	*last = 0;
	if (v != NULL && vlen == 8)
		*last = rr_keys_get_be64((const uint8_t *)v);
	else if (v != NULL) {
		rocksdb_free(v);
		return -EIO;
	}
	rocksdb_free(v);
	return 0;
}

/* An iterator over the messages of one room; lo/hi must outlive it. */
static rocksdb_iterator_t *room_iter(struct rr_store *s, rocksdb_readoptions_t *ro,
				     const char *room, size_t room_len, uint8_t *lo, int *lol,
				     uint8_t *hi)
{
	*lol = rr_keys_room(lo, RR_KEYS_MAX, room, room_len);
	int hl = rr_keys_prefix_end(hi, RR_KEYS_MAX, lo, (size_t)*lol);

	rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)lo, (size_t)*lol);
	rocksdb_readoptions_set_iterate_upper_bound(ro, hl > 0 ? (const char *)hi : NULL,
						    (size_t)hl);
	return rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_MESSAGES]);
}

static int iter_error(rocksdb_iterator_t *it)
{
	char *emsg = NULL;

	rocksdb_iter_get_error(it, &emsg);
	if (emsg == NULL)
		return 0;
	store_log("iterator: %s", emsg);
	rocksdb_free(emsg);
	return -EIO;
}

/* Oldest retained id of a room, or 0 if it has no messages. */
static int first_id(struct rr_store *s, const char *room, size_t room_len, uint64_t *first)
{
	uint8_t lo[RR_KEYS_MAX], hi[RR_KEYS_MAX];
	int lol;
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = room_iter(s, ro, room, room_len, lo, &lol, hi);
	int ret;

	*first = 0;
	rocksdb_iter_seek(it, (const char *)lo, (size_t)lol);
	if (rocksdb_iter_valid(it)) {
		size_t klen, rl;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);

		if (rr_keys_msg_decode(k, klen, &rl, first) < 0)
			*first = 0;
	}
	ret = iter_error(it);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	return ret;
}

/* Fill a ROOM_LOAD's results from disk; *found is false for an unknown room. */
static int load_room(struct rr_store *s, struct rr_store_req *req, bool *found)
{
	uint8_t k[RR_KEYS_MAX];
	int kl = rr_keys_room_rec(k, sizeof(k), req->room, req->room_len, RR_KEYS_ROOM_EPOCH);
	char *emsg = NULL;
	size_t vlen = 0;
	uint64_t created_ms, first;
	bool have_last;
	char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_ROOMS], (const char *)k, (size_t)kl,
				 &vlen, &emsg);

	*found = false;
	if (emsg != NULL) {
		store_log("room load: %s", emsg);
		rocksdb_free(emsg);
		return -EIO;
	}
	if (v == NULL)
		return 0;
	*found = true;
	int ret = rr_keys_epoch_decode((const uint8_t *)v, vlen, req->out.epoch, &created_ms);

	rocksdb_free(v);
	if (ret < 0) {
		store_log("room %.*s: corrupt epoch record", (int)req->room_len, req->room);
		return -EIO;
	}
	ret = get_last_id(s, req->room, req->room_len, &req->out.last_id, &have_last);
	if (ret < 0)
		return ret;
	ret = first_id(s, req->room, req->room_len, &first);
	if (ret < 0)
		return ret;
	req->out.first_id = first ? first : req->out.last_id + 1;
	return 0;
}

/* Copy one message (key and value at the iterator) into row n. */
static int take_msg(struct rr_store *s, rocksdb_iterator_t *it, uint32_t n, size_t *used)
{
	size_t klen, vlen, rl;
	const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
	const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
	struct rb_row *r = &s->rows[n];

	if (rr_keys_msg_decode(k, klen, &rl, &r->id) < 0 || vlen < RR_KEYS_MSG_HDR)
		return -EIO;
	if (rb_reserve(s, *used, vlen - RR_KEYS_MSG_HDR) < 0)
		return -ENOMEM;
	r->ts_ms = rr_keys_get_be64(v);
	r->key_off = 0;
	r->key_len = 0;
	r->val_off = (uint32_t)*used;
	r->val_len = (uint32_t)(vlen - RR_KEYS_MSG_HDR);
	memcpy(s->bytes + *used, v + RR_KEYS_MSG_HDR, r->val_len);
	*used += r->val_len;
	return 0;
}

static int do_read(struct rr_store *s, struct rr_store_req *req)
{
	bool after = req->op == RR_STORE_READ_AFTER;
	uint32_t max = after ? RR_STORE_READ_MAX : RR_STORE_HISTORY_READ_MAX;
	uint32_t limit = req->limit == 0 || req->limit > max ? max : req->limit;
	uint8_t lo[RR_KEYS_MAX], hi[RR_KEYS_MAX], seek[RR_KEYS_MAX];
	int lol, ret = 0;
	uint32_t n = 0;
	size_t used = 0;

	if ((after && req->id == UINT64_MAX) || (!after && req->id == 1))
		return 0; /* nothing can follow the last id / precede id 1 */
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = room_iter(s, ro, req->room, req->room_len, lo, &lol, hi);
	int sl = rr_keys_msg(seek, sizeof(seek), req->room, req->room_len,
			     after ? req->id + 1 : (req->id ? req->id - 1 : UINT64_MAX));

	if (after)
		rocksdb_iter_seek(it, (const char *)seek, (size_t)sl);
	else
		rocksdb_iter_seek_for_prev(it, (const char *)seek, (size_t)sl);
	while (rocksdb_iter_valid(it) && n < limit && (n == 0 || used < RR_STORE_READ_BYTES_MAX)) {
		ret = take_msg(s, it, n, &used);
		if (ret < 0)
			break;
		n++;
		if (after)
			rocksdb_iter_next(it);
		else
			rocksdb_iter_prev(it);
	}
	if (ret == 0) {
		req->out.more = rocksdb_iter_valid(it);
		ret = iter_error(it);
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (ret == 0)
		ret = rb_finish(s, req, n, used, !after);
	if (ret == -EIO)
		store_log("room %.*s: unreadable message record", (int)req->room_len, req->room);
	return ret;
}

/* Copy a RocksDB-owned value into the request's result allocation. */
static int get_value(struct rr_store *s, enum store_cf cf, const uint8_t *k, size_t kl,
		     struct rr_store_req *req)
{
	char *emsg = NULL;
	size_t vlen = 0;
	char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[cf], (const char *)k, kl, &vlen, &emsg);

	if (emsg != NULL) {
		store_log("get: %s", emsg);
		rocksdb_free(emsg);
		return -EIO;
	}
	if (v == NULL)
		return -ENOENT;
	uint8_t *buf = malloc(vlen + 1);

	if (buf == NULL) {
		rocksdb_free(v);
		return -ENOMEM;
	}
	memcpy(buf, v, vlen);
	rocksdb_free(v);
	req->out._buf = buf;
	req->out.val = buf;
	req->out.val_len = (uint32_t)vlen;
	return 0;
}

static int do_session_get(struct rr_store *s, struct rr_store_req *req)
{
	int ret = get_value(s, CF_SESSIONS, req->key, req->key_len, req);

	if (ret < 0)
		return ret;
	ret = rr_keys_session_decode(req->out.val, req->out.val_len, &req->out.session);
	req->out.val = NULL;
	req->out.val_len = 0;
	if (ret < 0) {
		store_log("session record corrupt");
		ret = -EIO;
	} else if (req->out.session.expiry_ms != 0 && req->out.session.expiry_ms <= wall_ms()) {
		ret = -ENOENT;
	}
	if (ret < 0)
		rr_store_req_release(req);
	return ret;
}

static int do_kv_get(struct rr_store *s, struct rr_store_req *req)
{
	uint8_t k[RR_KEYS_MAX];
	int kl = rr_keys_kv(k, sizeof(k), req->room, req->room_len, req->key, req->key_len);

	return get_value(s, CF_KV, k, (size_t)kl, req);
}

static int do_kv_list(struct rr_store *s, struct rr_store_req *req)
{
	uint32_t limit =
	    req->limit == 0 || req->limit > RR_STORE_LIST_MAX ? RR_STORE_LIST_MAX : req->limit;
	uint8_t lo[RR_KEYS_MAX], hi[RR_KEYS_MAX], seek[RR_KEYS_MAX];
	int lol = rr_keys_kv(lo, sizeof(lo), req->room, req->room_len, req->key, req->key_len);
	int hl = rr_keys_prefix_end(hi, sizeof(hi), lo, (size_t)lol);
	size_t prefix = 1 + req->room_len; /* the room part, stripped from keys */
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	uint32_t n = 0;
	size_t used = 0;
	int ret = 0;

	rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)lo, (size_t)lol);
	rocksdb_readoptions_set_iterate_upper_bound(ro, hl > 0 ? (const char *)hi : NULL,
						    (size_t)hl);
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_KV]);

	if (req->after != NULL) {
		int sl = rr_keys_kv(seek, sizeof(seek), req->room, req->room_len, req->after,
				    req->after_len);

		rocksdb_iter_seek(it, (const char *)seek, (size_t)sl);
		size_t klen;
		const char *k = rocksdb_iter_valid(it) ? rocksdb_iter_key(it, &klen) : NULL;

		if (k != NULL && klen == (size_t)sl && memcmp(k, seek, klen) == 0)
			rocksdb_iter_next(it);
	} else {
		rocksdb_iter_seek(it, (const char *)lo, (size_t)lol);
	}
	while (rocksdb_iter_valid(it) && n < limit && (n == 0 || used < RR_STORE_READ_BYTES_MAX)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);
		struct rb_row *r = &s->rows[n];

		if (klen < prefix || rb_reserve(s, used, klen - prefix + vlen) < 0) {
			ret = klen < prefix ? -EIO : -ENOMEM;
			break;
		}
		r->id = 0;
		r->ts_ms = 0;
		r->key_off = (uint32_t)used;
		r->key_len = (uint32_t)(klen - prefix);
		memcpy(s->bytes + used, k + prefix, r->key_len);
		used += r->key_len;
		r->val_off = (uint32_t)used;
		r->val_len = (uint32_t)vlen;
		memcpy(s->bytes + used, v, vlen);
		used += vlen;
		n++;
		rocksdb_iter_next(it);
	}
	if (ret == 0) {
		req->out.more = rocksdb_iter_valid(it);
		ret = iter_error(it);
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (ret == 0)
		ret = rb_finish(s, req, n, used, false);
	return ret;
}

/* ---- retention ---- */

/*
 * Plan the retention of one room: its messages beyond `keep` newest and older
 * than ttl_ms go with one DeleteRange added to wb (the caller writes it).
 * Sets *deleted (by id range) and *first_out, the oldest id retained after
 * the write (last + 1 if none).
 */
static int trim_room(struct rr_store *s, rocksdb_writebatch_t *wb, const char *room,
		     size_t room_len, uint32_t keep, uint64_t ttl_ms, uint64_t *deleted,
		     uint64_t *first_out)
{
	uint64_t last, first, cut;
	bool found;
	int ret;

	*deleted = 0;
	*first_out = 0;
	ret = get_last_id(s, room, room_len, &last, &found);
	if (ret < 0 || !found)
		return ret;
	ret = first_id(s, room, room_len, &first);
	if (ret < 0)
		return ret;
	if (first == 0) {
		*first_out = last + 1;
		return 0;
	}
	cut = first;
	if (last >= keep && last - keep + 1 > cut)
		cut = last - keep + 1;

	/* age: ids and timestamps grow together, so walk forward from the cut
	 * while messages are older than the limit */
	uint64_t now = wall_ms();
	uint64_t oldest_ok = now > ttl_ms ? now - ttl_ms : 0;
	uint8_t lo[RR_KEYS_MAX], hi[RR_KEYS_MAX], seek[RR_KEYS_MAX];
	int lol;
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = room_iter(s, ro, room, room_len, lo, &lol, hi);
	int sl = rr_keys_msg(seek, sizeof(seek), room, room_len, cut);

	rocksdb_iter_seek(it, (const char *)seek, (size_t)sl);
	for (uint32_t i = 0; i < TRIM_SCAN_MAX && rocksdb_iter_valid(it); i++) {
		size_t klen, vlen, rl;
		uint64_t id;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);

		if (rr_keys_msg_decode(k, klen, &rl, &id) < 0 || vlen < RR_KEYS_MSG_HDR ||
		    rr_keys_get_be64(v) >= oldest_ok)
			break;
		cut = id + 1;
		rocksdb_iter_next(it);
	}
	ret = iter_error(it);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (ret < 0)
		return ret;
	if (cut > last + 1)
		cut = last + 1;
	*first_out = cut;
	if (cut <= first)
		return 0;

	uint8_t from[RR_KEYS_MAX], to[RR_KEYS_MAX];
	int fl = rr_keys_msg(from, sizeof(from), room, room_len, first);
	int tl = rr_keys_msg(to, sizeof(to), room, room_len, cut);

	rocksdb_writebatch_delete_range_cf(wb, s->cf[CF_MESSAGES], (const char *)from, (size_t)fl,
					   (const char *)to, (size_t)tl);
	*deleted = cut - first;
	return 0;
}

/* Write a batch of retention deletes. Not an acknowledgement, so never
 * fsync'd: if a power loss undoes it, the next sweep trims again. */
static int write_trims(struct rr_store *s, rocksdb_writebatch_t *wb, const char *what)
{
	char *emsg = NULL;
	int err;

	if (rocksdb_writebatch_count(wb) == 0)
		return 0;
	rocksdb_write(s->db, s->wopts_trim, wb, &emsg);
	if (emsg == NULL)
		return 0;
	err = rocks_errno(emsg);
	store_log("%s: %s", what, emsg);
	rocksdb_free(emsg);
	s->need_reopen = true;
	return err;
}

/* One bounded step of the periodic sweep: retention for the next rooms after
 * the cursor, expired sessions after theirs. Returns true when both reached
 * the end (the sweep is complete until the next interval). */
static bool sweep_step(struct rr_store *s)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_ROOMS]);
	uint32_t visited = 0;
	uint64_t trimmed = 0;
	bool rooms_done, sessions_done;

	rocksdb_writebatch_clear(s->wb);
	rocksdb_iter_seek(it, (const char *)s->sweep_cursor, s->sweep_cursor_len);
	while (rocksdb_iter_valid(it) && visited < SWEEP_ROOMS_STEP) {
		size_t klen, room_len;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		const char *room;
		char tag;
		uint64_t deleted = 0, first;

		if (rr_keys_room_rec_decode(k, klen, &room, &room_len, &tag) == 0 &&
		    tag == RR_KEYS_ROOM_LAST) {
			if (trim_room(s, s->wb, room, room_len, s->opts.history_size,
				      s->opts.history_ttl_ms, &deleted, &first) == 0)
				trimmed += deleted;
			visited++;
		}
		rocksdb_iter_next(it);
	}
	rooms_done = !rocksdb_iter_valid(it);
	s->sweep_cursor_len = 0;
	if (!rooms_done) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen <= sizeof(s->sweep_cursor)) {
			memcpy(s->sweep_cursor, k, klen);
			s->sweep_cursor_len = klen;
		}
	}
	(void)iter_error(it);
	rocksdb_iter_destroy(it);

	/* sessions past their expiry */
	uint64_t now = wall_ms();

	it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_SESSIONS]);
	rocksdb_iter_seek(it, (const char *)s->session_cursor, s->session_cursor_len);
	for (uint32_t i = 0; i < SWEEP_SESSIONS_STEP && rocksdb_iter_valid(it); i++) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
		struct rr_store_session ss;

		if (rr_keys_session_decode(v, vlen, &ss) == 0 && ss.expiry_ms != 0 &&
		    ss.expiry_ms <= now)
			rocksdb_writebatch_delete_cf(s->wb, s->cf[CF_SESSIONS], k, klen);
		rocksdb_iter_next(it);
	}
	sessions_done = !rocksdb_iter_valid(it);
	s->session_cursor_len = 0;
	if (!sessions_done) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen <= sizeof(s->session_cursor)) {
			memcpy(s->session_cursor, k, klen);
			s->session_cursor_len = klen;
		}
	}
	(void)iter_error(it);
	rocksdb_iter_destroy(it);

	if (write_trims(s, s->wb, "retention sweep") == 0)
		STAT_ADD(s, trimmed, trimmed);
	return rooms_done && sessions_done;
}

/* ---- the write phase (group commit) ---- */

static uint32_t room_hash(const char *room, uint32_t len)
{
	uint32_t h = 2166136261u;

	for (uint32_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)room[i]) * 16777619u;
	return h;
}

static void room_table_reset(struct rr_store *s)
{
	s->n_rooms = 0;
	memset(s->roomtab, 0, sizeof(s->roomtab));
}

/* This drain's entry for a room; *fresh when it was just added (zeroed). */
static struct room_last *room_find(struct rr_store *s, const char *room, uint32_t len, bool *fresh)
{
	uint32_t slot = room_hash(room, len) % ROOMTAB_SLOTS;

	/* bounded: the table is twice the largest number of rooms in a drain */
	for (uint32_t probe = 0; probe < ROOMTAB_SLOTS; probe++) {
		uint16_t i = s->roomtab[slot];

		if (i == 0)
			break;
		struct room_last *r = &s->rooms[i - 1];

		if (r->room_len == len && memcmp(r->room, room, len) == 0) {
			*fresh = false;
			return r;
		}
		slot = (slot + 1) % ROOMTAB_SLOTS;
	}
	assert(s->n_rooms < RR_STORE_BATCH_MAX);
	struct room_last *r = &s->rooms[s->n_rooms++];

	*r = (struct room_last){.room = room, .room_len = len};
	s->roomtab[slot] = (uint16_t)s->n_rooms;
	*fresh = true;
	return r;
}

/* The batch's entry for a room, loading its stored last id on first use. */
static struct room_last *room_lookup(struct rr_store *s, const char *room, uint32_t len)
{
	bool fresh, found;
	struct room_last *r = room_find(s, room, len, &fresh);

	if (!fresh)
		return r;
	r->err = get_last_id(s, room, len, &r->last, &found);
	if (r->err == 0 && !found)
		r->err = -ESTALE; /* never loaded: no epoch to number under */
	return r;
}

static bool is_write(enum rr_store_op op)
{
	return op == RR_STORE_APPEND || op == RR_STORE_SESSION_PUT || op == RR_STORE_SESSION_DEL ||
	       op == RR_STORE_KV_PUT || op == RR_STORE_KV_DEL;
}

/* Add one write request to s->wb; returns 0 or the request's error (it is
 * then not part of the batch). */
static int batch_add(struct rr_store *s, struct rr_store_req *req, uint64_t now)
{
	uint8_t k[RR_KEYS_MAX];
	int kl;

	switch (req->op) {
	case RR_STORE_APPEND: {
		struct room_last *r = room_lookup(s, req->room, req->room_len);

		if (r->err < 0)
			return r->err;
		if (req->id != r->last + 1)
			return -ESTALE;
		uint8_t hdr[RR_KEYS_MSG_HDR];

		kl = rr_keys_msg(k, sizeof(k), req->room, req->room_len, req->id);
		rr_keys_put_be64(hdr, req->ts_ms ? req->ts_ms : now);
		const char *vs[2] = {(const char *)hdr, req->data};
		size_t vl[2] = {sizeof(hdr), req->len};
		const char *ks[1] = {(const char *)k};
		size_t kls[1] = {(size_t)kl};

		rocksdb_writebatch_putv_cf(s->wb, s->cf[CF_MESSAGES], 1, ks, kls, 2, vs, vl);
		r->last = req->id;
		r->dirty = true;
		return 0;
	}
	case RR_STORE_SESSION_PUT: {
		size_t n = rr_keys_session_size(req->session);
		uint8_t *v = malloc(n);

		if (v == NULL)
			return -ENOMEM;
		rr_keys_session_encode(v, n, req->session);
		rocksdb_writebatch_put_cf(s->wb, s->cf[CF_SESSIONS], req->key, req->key_len,
					  (const char *)v, n);
		free(v); /* the batch holds its own copy */
		return 0;
	}
	case RR_STORE_SESSION_DEL:
		rocksdb_writebatch_delete_cf(s->wb, s->cf[CF_SESSIONS], req->key, req->key_len);
		return 0;
	case RR_STORE_KV_PUT:
		kl = rr_keys_kv(k, sizeof(k), req->room, req->room_len, req->key, req->key_len);
		rocksdb_writebatch_put_cf(s->wb, s->cf[CF_KV], (const char *)k, (size_t)kl,
					  req->data, req->len);
		return 0;
	case RR_STORE_KV_DEL:
		kl = rr_keys_kv(k, sizeof(k), req->room, req->room_len, req->key, req->key_len);
		rocksdb_writebatch_delete_cf(s->wb, s->cf[CF_KV], (const char *)k, (size_t)kl);
		return 0;
	default:
		assert(!"not a write");
		return -EINVAL;
	}
}

/*
 * After a real write error RocksDB stays read-only; reopening clears that.
 * Reopen only once the file system has room again: RocksDB writes its
 * options and MANIFEST while opening, and a reopen into a full disk would
 * fail anyway (and trip the info-log writer, see rr_store_open). Until then
 * the database stays open read-only, so reads keep working. Returns 0 when
 * the database is open and writable, else the error writes should get.
 */
static int maybe_reopen(struct rr_store *s)
{
	uint64_t now = mono_ms();
	struct statvfs vfs;
	char *emsg = NULL;

	if (!s->need_reopen)
		return 0;
	if (now < s->reopen_at_ms)
		return s->down_err;
	if (statvfs(s->dir, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < RR_STORE_REOPEN_FREE_MIN) {
		s->down_err = -ENOSPC;
		goto retry_later;
	}
	db_close(s);
	if (db_open(s, &emsg) < 0) {
		if (!s->reopen_logged)
			store_log("reopening after a write error failed (retrying): %s", emsg);
		s->reopen_logged = true;
		s->down_err = rocks_errno(emsg);
		rocksdb_free(emsg);
		goto retry_later;
	}
	s->need_reopen = false;
	s->reopen_logged = false;
	s->reopen_backoff_ms = 0;
	s->down_err = 0;
	return 0;

retry_later:
	s->reopen_backoff_ms =
	    s->reopen_backoff_ms ? s->reopen_backoff_ms * 2 : REOPEN_BACKOFF_MIN_MS;
	if (s->reopen_backoff_ms > REOPEN_BACKOFF_MAX_MS)
		s->reopen_backoff_ms = REOPEN_BACKOFF_MAX_MS;
	s->reopen_at_ms = now + s->reopen_backoff_ms;
	return s->down_err;
}

static void write_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
	uint64_t now = wall_ms();
	uint32_t in_batch = 0;
	int err = 0;

	room_table_reset(s);
	rocksdb_writebatch_clear(s->wb);
	if (s->db == NULL) {
		err = -EIO;
	} else {
		for (uint32_t i = 0; i < n; i++) {
			if (!is_write(reqs[i]->op))
				continue;
			reqs[i]->res = batch_add(s, reqs[i], now);
			if (reqs[i]->res == 0)
				in_batch++;
		}
	}
	if (in_batch == 0)
		goto fail_all_if_err;

	for (uint32_t i = 0; i < s->n_rooms; i++) {
		struct room_last *r = &s->rooms[i];
		uint8_t k[RR_KEYS_MAX], v[8];

		if (!r->dirty)
			continue;
		int kl = rr_keys_room_rec(k, sizeof(k), r->room, r->room_len, RR_KEYS_ROOM_LAST);

		rr_keys_put_be64(v, r->last);
		rocksdb_writebatch_put_cf(s->wb, s->cf[CF_ROOMS], (const char *)k, (size_t)kl,
					  (const char *)v, 8);
	}

	char *emsg = NULL;

	pthread_mutex_lock(&s->mu);
	if (s->fault_count > 0) {
		s->fault_count--;
		err = s->fault_err;
	}
	pthread_mutex_unlock(&s->mu);
	STAT_ADD(s, batches, 1);
	STAT_ADD(s, batch_writes, in_batch);
	if (err == 0) {
		rocksdb_write(s->db, s->wopts, s->wb, &emsg);
		if (emsg != NULL) {
			err = rocks_errno(emsg);
			s->need_reopen = true;
		}
	}
	if (err < 0) {
		STAT_ADD(s, batch_failures, 1);
		if (!s->failing)
			store_log("write of %u requests failed: %s; failing writes until the "
				  "disk recovers",
				  in_batch, emsg ? emsg : strerror(-err));
		s->failing = true;
		s->burst_failures++;
	} else if (s->failing) {
		store_log("writes recovered after %llu failed batches",
			  (unsigned long long)s->burst_failures);
		s->failing = false;
		s->burst_failures = 0;
	}
	rocksdb_free(emsg);

fail_all_if_err:
	if (err == 0)
		return;
	for (uint32_t i = 0; i < n; i++) {
		if (is_write(reqs[i]->op) && reqs[i]->res == 0)
			reqs[i]->res = err;
	}
}

/* ---- completion ---- */

/* Post every request of the drain to its core's ring, in queue order. */
static void post_all(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
	uint32_t pending = 0;

	/* counted first: once posted, a core may look at the stats */
	STAT_ADD(s, completed, n);
	for (uint32_t i = 0; i < n; i++) {
		struct rr_store_req *req = reqs[i];

		if (req->reply_ring_fd < 0) {
			req->done(req);
			continue;
		}
		struct io_uring_sqe *sqe = io_uring_get_sqe(&s->post);

		if (sqe == NULL) {
			io_uring_submit(&s->post);
			sqe = io_uring_get_sqe(&s->post);
			assert(sqe != NULL);
		}
		io_uring_prep_msg_ring(sqe, req->reply_ring_fd, 0, rr_ud_ptr(RR_UD_STORE, req), 0);
		/* only failures come back: a delivered completion costs us no CQE */
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		io_uring_sqe_set_data(sqe, req);
		pending++;
		/* after our last touch of req: once submitted, its core owns it */
		RR_HB_RELEASE(req);
	}
	if (pending > 0)
		io_uring_submit(&s->post);

	/* MSG_RING completes inline; any failure is already in our CQ */
	struct io_uring_cqe *cqe;

	for (uint32_t i = 0; i < POST_RING_ENTRIES * 2 && io_uring_peek_cqe(&s->post, &cqe) == 0;
	     i++) {
		struct rr_store_req *req = io_uring_cqe_get_data(cqe);

		STAT_ADD(s, post_failures, 1);
		store_log("posting a completion to ring fd %d failed: %s (request lost)",
			  req ? req->reply_ring_fd : -1, strerror(-cqe->res));
		io_uring_cqe_seen(&s->post, cqe);
	}
}

/* ---- the worker ---- */

/*
 * ROOM_LOADs of the drain. Rooms that are new get their epoch records in one
 * batch, written before any of those loads completes; loads of the same new
 * room in one drain share the epoch of the first.
 */
static void room_load_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
	uint32_t creating = 0;
	uint64_t now = wall_ms();

	room_table_reset(s);
	rocksdb_writebatch_clear(s->wb);
	for (uint32_t i = 0; i < n; i++) {
		struct rr_store_req *req = reqs[i];
		bool fresh, found;

		if (req->op != RR_STORE_ROOM_LOAD || req->res < 0)
			continue;
		STAT_ADD(s, reads, 1);
		struct room_last *r = room_find(s, req->room, req->room_len, &fresh);

		if (!fresh && r->creator != NULL) {
			memcpy(req->out.epoch, r->creator->out.epoch, sizeof(req->out.epoch));
			req->out.last_id = 0;
			req->out.first_id = 1;
			continue;
		}
		req->res = load_room(s, req, &found);
		if (req->res < 0 || found)
			continue;

		/* unknown room: a fresh epoch and an empty log */
		uint8_t ek[RR_KEYS_MAX], lk[RR_KEYS_MAX], rec[RR_KEYS_EPOCH_REC], zero[8];
		int ekl =
		    rr_keys_room_rec(ek, sizeof(ek), req->room, req->room_len, RR_KEYS_ROOM_EPOCH);
		int lkl =
		    rr_keys_room_rec(lk, sizeof(lk), req->room, req->room_len, RR_KEYS_ROOM_LAST);

		random_epoch(req->out.epoch);
		rr_keys_epoch_encode(rec, req->out.epoch, now);
		rr_keys_put_be64(zero, 0);
		rocksdb_writebatch_put_cf(s->wb, s->cf[CF_ROOMS], (const char *)ek, (size_t)ekl,
					  (const char *)rec, sizeof(rec));
		rocksdb_writebatch_put_cf(s->wb, s->cf[CF_ROOMS], (const char *)lk, (size_t)lkl,
					  (const char *)zero, 8);
		req->out.created = true;
		req->out.last_id = 0;
		req->out.first_id = 1;
		r->creator = req;
		creating++;
	}
	if (creating == 0)
		return;

	char *emsg = NULL;

	rocksdb_write(s->db, s->wopts, s->wb, &emsg);
	if (emsg == NULL)
		return;
	int err = rocks_errno(emsg);

	store_log("creating %u rooms: %s", creating, emsg);
	rocksdb_free(emsg);
	s->need_reopen = true;
	for (uint32_t i = 0; i < n; i++) {
		struct rr_store_req *req = reqs[i];
		bool fresh;

		if (req->op != RR_STORE_ROOM_LOAD || req->res < 0)
			continue;
		if (room_find(s, req->room, req->room_len, &fresh)->creator != NULL) {
			req->res = err;
			req->out.created = false;
		}
	}
}

/* TRIMs of the drain, in one batch. */
static void trim_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
	uint64_t total = 0;
	bool any = false;

	rocksdb_writebatch_clear(s->wb);
	for (uint32_t i = 0; i < n; i++) {
		struct rr_store_req *req = reqs[i];

		if (req->op != RR_STORE_TRIM || req->res < 0)
			continue;
		any = true;
		req->res = trim_room(s, s->wb, req->room, req->room_len,
				     req->limit ? req->limit : s->opts.history_size,
				     req->ttl_ms ? req->ttl_ms : s->opts.history_ttl_ms,
				     &req->out.n_deleted, &req->out.first_id);
		if (req->res == 0)
			total += req->out.n_deleted;
	}
	if (!any)
		return;
	int err = write_trims(s, s->wb, "trim");

	for (uint32_t i = 0; i < n && err < 0; i++) {
		if (reqs[i]->op == RR_STORE_TRIM && reqs[i]->res == 0) {
			reqs[i]->res = err;
			reqs[i]->out.n_deleted = 0;
		}
	}
	if (err == 0)
		STAT_ADD(s, trimmed, total);
}

static void run_drain(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
	bool flush = false;

	int down = maybe_reopen(s);

	if (down < 0) {
		/* writes fail fast until the disk is usable again */
		for (uint32_t i = 0; i < n; i++)
			if (is_write(reqs[i]->op) || reqs[i]->op == RR_STORE_TRIM ||
			    reqs[i]->op == RR_STORE_FLUSH)
				reqs[i]->res = down;
		if (!s->failing)
			store_log("store is not writable: %s", strerror(-down));
		s->failing = true;
	} else {
		write_phase(s, reqs, n);
	}
	if (s->db == NULL) {
		/* a reopen failed: nothing to read from either */
		for (uint32_t i = 0; i < n; i++)
			if (reqs[i]->res == 0)
				reqs[i]->res = -EIO;
		goto post;
	}

	room_load_phase(s, reqs, n);
	for (uint32_t i = 0; i < n; i++) {
		struct rr_store_req *req = reqs[i];

		if (req->res < 0)
			continue;
		switch (req->op) {
		case RR_STORE_READ_AFTER:
		case RR_STORE_READ_BEFORE:
			req->res = do_read(s, req);
			break;
		case RR_STORE_SESSION_GET:
			req->res = do_session_get(s, req);
			break;
		case RR_STORE_KV_GET:
			req->res = do_kv_get(s, req);
			break;
		case RR_STORE_KV_LIST:
			req->res = do_kv_list(s, req);
			break;
		case RR_STORE_FLUSH:
			flush = true;
			continue;
		default:
			continue;
		}
		if (req->res < 0 && req->out._buf != NULL)
			rr_store_req_release(req);
		STAT_ADD(s, reads, 1);
	}
	trim_phase(s, reqs, n);

	if (flush && down == 0) {
		char *emsg = NULL;
		int err = 0;

		if (s->opts.durability == RR_STORE_MEMORY) {
			for (int c = 0; c < CF_COUNT && emsg == NULL; c++)
				rocksdb_flush_cf(s->db, s->fopts, s->cf[c], &emsg);
		} else {
			rocksdb_flush_wal(s->db, 1, &emsg);
		}
		if (emsg != NULL) {
			err = rocks_errno(emsg);
			store_log("flush: %s", emsg);
			rocksdb_free(emsg);
		}
		for (uint32_t i = 0; i < n; i++)
			if (reqs[i]->op == RR_STORE_FLUSH && reqs[i]->res == 0)
				reqs[i]->res = err;
	}
post:
	post_all(s, reqs, n);
}

static void *worker_main(void *arg)
{
	struct rr_store *s = arg;

	pthread_setname_np(pthread_self(), "rr-store");
	pthread_mutex_lock(&s->mu);
	for (;;) {
		bool sweep = false;

		while ((s->q_len == 0 || s->paused) && !s->stopping) {
			uint64_t now = mono_ms();

			if (s->paused) {
				/* a paused worker does nothing, the sweep included */
				pthread_cond_wait(&s->cv, &s->mu);
				continue;
			}
			if (now >= s->next_sweep_ms) {
				sweep = true;
				break;
			}
			struct timespec dl = {
			    .tv_sec = (time_t)(s->next_sweep_ms / 1000),
			    .tv_nsec = (long)(s->next_sweep_ms % 1000) * 1000000,
			};

			pthread_cond_timedwait(&s->cv, &s->mu, &dl);
		}
		if (s->stopping && s->q_len == 0)
			break;
		uint32_t n = 0;
		uint64_t bytes = 0;

		/* bounded by count and by bytes: one WriteBatch holds copies
		 * of every payload of the drain */
		while (s->q_len > 0 && n < RR_STORE_BATCH_MAX && bytes < RR_STORE_BATCH_BYTES_MAX) {
			struct rr_store_req *req = s->q[s->q_head];

			bytes += (uint64_t)req->len + req->key_len;
			s->q_head = (s->q_head + 1) % s->q_cap;
			s->q_len--;
			s->core_len[req->core]--;
			s->drain[n++] = req;
		}
		pthread_mutex_unlock(&s->mu);

		if (n > 0)
			run_drain(s, s->drain, n);
		if (sweep || mono_ms() >= s->next_sweep_ms) {
			bool done = s->db == NULL || s->need_reopen || sweep_step(s);

			/* an unfinished sweep continues right after the next drain */
			s->next_sweep_ms = mono_ms() + (done ? s->opts.trim_interval_ms : 0);
		}
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

void rr_store_close(struct rr_store *s)
{
	char *emsg = NULL;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	s->paused = false;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);

	if (s->need_reopen)
		maybe_reopen(s);
	if (s->db != NULL) {
		if (s->opts.durability == RR_STORE_MEMORY) {
			for (int c = 0; c < CF_COUNT && emsg == NULL; c++)
				rocksdb_flush_cf(s->db, s->fopts, s->cf[c], &emsg);
		} else {
			rocksdb_flush_wal(s->db, 1, &emsg);
		}
		/* only a store whose data reached disk may call itself clean */
		if (emsg == NULL)
			write_state(s, true, &emsg);
		if (emsg != NULL) {
			store_log("closing: %s", emsg);
			rocksdb_free(emsg);
		}
	}
	io_uring_queue_exit(&s->post);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free_store(s);
}

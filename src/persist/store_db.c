/*
 * The store's lifecycle: opening RocksDB with its column families, the state
 * record that tells a clean stop from a crash (and gives rooms new epochs
 * when acknowledged messages may be lost), reopening after a write error,
 * and a clean close. Interface in store.h; durability modes in README.md.
 *
 * DESIGN: everything here runs either before the worker starts (open), on
 * the worker thread (reopening before a write), or after it has been joined
 * (close), so none of it takes the queue lock.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "core/time.h"
#include "persist/store_int.h"

static const char *const cf_names[CF_COUNT] = {
    "default", "messages", "rooms", "sessions", "kv", "alarms",
};

/* rooms-CF bookkeeping key (first byte 0: never a room key); value in
 * write_state(). */
static const uint8_t state_key[] = {0, 's', 't', 'a', 't', 'e'};

#define REOPEN_BACKOFF_MIN_MS 50
#define REOPEN_BACKOFF_MAX_MS 2000
/* free space a reopen after a write error waits for: RocksDB writes its
 * OPTIONS file (~40 KiB for six column families), a MANIFEST and a new WAL */
#define REOPEN_FREE_MIN (1u << 20)

void rr_store_log(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ringroom: store: %s\n", line);
}

int rr_store_rocks_errno(const char *msg)
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

void rr_store_random_epoch(char epoch[RR_STORE_EPOCH_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t r[RR_STORE_EPOCH_LEN / 2];

	/* getrandom of 8 bytes never returns short once the pool is ready;
	 * fall back to time-derived bits rather than fail a room load */
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		uint64_t t = rr_now_ms() ^ (rr_wall_ms() << 20) ^ (uint64_t)(uintptr_t)epoch;

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
	uint64_t n = 0, now = rr_wall_ms();
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
		rr_store_random_epoch(epoch);
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
		rr_store_log("%s: %llu rooms get new epochs (acknowledged messages may be lost)",
			     why, (unsigned long long)n);
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
	rr_store_post_free(s);
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

static void set_defaults(struct rr_store_opts *o)
{
	if (o->history_size == 0)
		o->history_size = RR_STORE_DEFAULT_HISTORY;
	if (o->history_ttl_ms == 0)
		o->history_ttl_ms = RR_STORE_DEFAULT_TTL_MS;
	if (o->queue_capacity == 0)
		o->queue_capacity = RR_STORE_DEFAULT_QUEUE;
	if (o->cores == 0)
		o->cores = 1;
	if (o->trim_interval_ms == 0)
		o->trim_interval_ms = RR_STORE_DEFAULT_TRIM_INTERVAL_MS;
}

/* RocksDB's option objects for the durability mode (they cannot fail). */
static void make_rocks_options(struct rr_store *s, const struct rr_store_opts *opts)
{
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
	 * its LOG only while opening (which a reopen does only with free
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
	set_defaults(&s->opts);
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
	make_rocks_options(s, opts);

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

	ret = rr_store_post_init(s);
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
	s->next_sweep_ms = rr_now_ms() + s->opts.trim_interval_ms;
	ret = -pthread_create(&s->thread, NULL, rr_store_worker_main, s);
	if (ret < 0) {
		set_err(err, errlen, "store worker thread: %s", strerror(-ret));
		goto fail_thread;
	}
	*out = s;
	return 0;

fail_thread:
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
fail:
	free_store(s);
	return ret;
fail_nomem:
	set_err(err, errlen, "out of memory opening the store");
	if (s != NULL)
		free_store(s);
	return -ENOMEM;
}

/*
 * After a real write error RocksDB stays read-only; reopening clears that.
 * Reopen only once the file system has room again: RocksDB writes its
 * options and MANIFEST while opening, and a reopen into a full disk would
 * fail anyway (and trip the info-log writer, see make_rocks_options). Until
 * then the database stays open read-only, so reads keep working.
 */
int rr_store_reopen_if_needed(struct rr_store *s)
{
	uint64_t now = rr_now_ms();
	struct statvfs vfs;
	char *emsg = NULL;

	if (!s->need_reopen)
		return 0;
	if (now < s->reopen_at_ms)
		return s->down_err;
	if (statvfs(s->dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < REOPEN_FREE_MIN) {
		s->down_err = -ENOSPC;
		goto retry_later;
	}
	db_close(s);
	if (db_open(s, &emsg) < 0) {
		if (!s->reopen_logged)
			rr_store_log("reopening after a write error failed (retrying): %s", emsg);
		s->reopen_logged = true;
		s->down_err = rr_store_rocks_errno(emsg);
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
	/* the worker drains the queue and its post lists before it returns */
	pthread_join(s->thread, NULL);

	if (s->need_reopen)
		rr_store_reopen_if_needed(s);
	if (s->db != NULL) {
		emsg = rr_store_make_durable(s);
		/* only a store whose data reached disk may call itself clean */
		if (emsg == NULL)
			write_state(s, true, &emsg);
		if (emsg != NULL) {
			rr_store_log("closing: %s", emsg);
			rocksdb_free(emsg);
		}
	}
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free_store(s);
}

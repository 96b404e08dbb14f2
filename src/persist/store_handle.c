/*
 * The RocksDB handle: opening the database with its column families,
 * closing it, and reopening it after a write error (on the worker thread,
 * before a write).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "core/time.h"
#include "persist/store_int.h"

#define REOPEN_BACKOFF_MIN_MS 50
#define REOPEN_BACKOFF_MAX_MS 2000
/* free space a reopen after a write error waits for: RocksDB writes its
 * OPTIONS file (~40 KiB for six column families), a MANIFEST and a new WAL */
#define REOPEN_FREE_MIN (1u << 20)

static const char *const cf_names[CF_COUNT] = {
    "default", "messages", "rooms", "sessions", "kv", "alarms",
};

/* rooms-CF bookkeeping key (first byte 0: never a room key); value in
 * write_state(). */
void rr_store_db_close(struct rr_store *s)
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
int rr_store_db_open(struct rr_store *s, char **errmsg)
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
	rr_store_db_close(s);
	if (rr_store_db_open(s, &emsg) < 0) {
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


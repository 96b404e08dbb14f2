/*
 * Retention: each room keeps at most history_size messages, none older than
 * history_ttl_ms, and sessions past their expiry are deleted. Runs on the
 * worker, for TRIM requests and on its own every trim_interval_ms (README.md,
 * "Retention").
 *
 * DESIGN: a room is trimmed with one DeleteRange over its oldest ids, so the
 * cost does not grow with the number of messages dropped. The periodic sweep
 * is cut into bounded steps (SWEEP_ROOMS_STEP rooms, SWEEP_SESSIONS_STEP
 * sessions) resumed from a cursor, so requests queued meanwhile wait for one
 * step, not for the whole database. Retention deletes are never fsync'd: if a
 * power loss undoes one, the next sweep repeats it.
 */
#include <errno.h>
#include <string.h>

#include "core/time.h"
#include "persist/store_int.h"

/* rooms visited (and sessions checked) per step of the periodic sweep: keeps
 * each step short so queued requests are not held up behind it. */
#define SWEEP_ROOMS_STEP 256
#define SWEEP_SESSIONS_STEP 1024
/* TTL trimming walks forward from the oldest message; bound one room's walk */
#define TRIM_SCAN_MAX 100000

/* The first id to keep by age: walk forward from `cut` while messages are
 * older than the limit (ids and timestamps grow together). */
static int age_cut(struct rr_store *s, const char *room, size_t room_len, uint64_t ttl_ms,
		   uint64_t *cut)
{
	uint64_t now = rr_wall_ms();
	uint64_t oldest_ok = now > ttl_ms ? now - ttl_ms : 0;
	uint8_t lo[RR_KEYS_MAX], hi[RR_KEYS_MAX], seek[RR_KEYS_MAX];
	int lol, ret;
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = rr_store_room_iter(s, ro, room, room_len, lo, &lol, hi);
	int sl = rr_keys_msg(seek, sizeof(seek), room, room_len, *cut);

	rocksdb_iter_seek(it, (const char *)seek, (size_t)sl);
	for (uint32_t i = 0; i < TRIM_SCAN_MAX && rocksdb_iter_valid(it); i++) {
		size_t klen, vlen, rl;
		uint64_t id;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);

		if (rr_keys_msg_decode(k, klen, &rl, &id) < 0 || vlen < RR_KEYS_MSG_HDR ||
		    rr_get_be64(v) >= oldest_ok)
			break;
		*cut = id + 1;
		rocksdb_iter_next(it);
	}
	ret = rr_store_iter_error(it);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	return ret;
}

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
	ret = rr_store_get_last_id(s, room, room_len, &last, &found);
	if (ret < 0 || !found)
		return ret;
	ret = rr_store_first_id(s, room, room_len, &first);
	if (ret < 0)
		return ret;
	if (first == 0) {
		*first_out = last + 1;
		return 0;
	}
	cut = first;
	if (last >= keep && last - keep + 1 > cut)
		cut = last - keep + 1;
	ret = age_cut(s, room, room_len, ttl_ms, &cut);
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
	err = rr_store_rocks_errno(emsg);
	rr_store_log("%s: %s", what, emsg);
	rocksdb_free(emsg);
	s->need_reopen = true;
	return err;
}

void rr_store_trim_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
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

/* ---- the periodic sweep ---- */

/* Where the next step resumes: the iterator's key (empty when it reached the
 * end, or in the unlikely case the key does not fit: start over). Frees the
 * iterator. Returns true when the walk reached the end. */
static bool sweep_leave(rocksdb_iterator_t *it, uint8_t *cursor, size_t cap, size_t *cursor_len)
{
	bool done = !rocksdb_iter_valid(it);

	*cursor_len = 0;
	if (!done) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen <= cap) {
			memcpy(cursor, k, klen);
			*cursor_len = klen;
		}
	}
	(void)rr_store_iter_error(it);
	rocksdb_iter_destroy(it);
	return done;
}

/* Retention for the next SWEEP_ROOMS_STEP rooms; adds to *trimmed. */
static bool sweep_rooms(struct rr_store *s, uint64_t *trimmed)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_ROOMS]);
	uint32_t visited = 0;

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
				*trimmed += deleted;
			visited++;
		}
		rocksdb_iter_next(it);
	}
	return sweep_leave(it, s->sweep_cursor, sizeof(s->sweep_cursor), &s->sweep_cursor_len);
}

/* Deletes for the expired sessions among the next SWEEP_SESSIONS_STEP. */
static bool sweep_sessions(struct rr_store *s)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[CF_SESSIONS]);
	uint64_t now = rr_wall_ms();

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
	return sweep_leave(it, s->session_cursor, sizeof(s->session_cursor),
			   &s->session_cursor_len);
}

bool rr_store_sweep_step(struct rr_store *s)
{
	uint64_t trimmed = 0;

	rocksdb_writebatch_clear(s->wb);
	bool rooms_done = sweep_rooms(s, &trimmed);
	bool sessions_done = sweep_sessions(s);

	if (write_trims(s, s->wb, "retention sweep") == 0)
		STAT_ADD(s, trimmed, trimmed);
	return rooms_done && sessions_done;
}

/*
 * Group commit: every write of one drain goes into ONE RocksDB WriteBatch,
 * written once with the durability mode's options; the rooms a drain creates
 * get their epoch records in one more batch; a FLUSH is the barrier that
 * makes all of it survive a power loss. Interface in store.h, durability
 * modes in README.md.
 *
 * DESIGN: APPEND keeps ids gap-free. The worker checks each id against the
 * room's stored last id (one Get per room per drain, kept in a small
 * open-addressing table of the drain's rooms) and refuses a gap with
 * -ESTALE, so a core that lost an append to a disk error learns it must
 * reload the room instead of silently numbering past a hole. The message
 * and the room's new last id go into the same batch.
 *
 * A failed write puts RocksDB into a read-only background-error state. The
 * batch fails as a whole (every request of it gets the error, nothing of it
 * is stored), is logged once per burst, and store_db.c reopens the database
 * before the next write.
 */
#include "core/hash.h"
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"
#include "persist/store_int.h"

/* ---- the drain's rooms ---- */

static uint32_t room_hash(const char *room, uint32_t len)
{
	return (uint32_t)rr_hash(room, len);
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
	r->err = rr_store_get_last_id(s, room, len, &r->last, &found);
	if (r->err == 0 && !found)
		r->err = -ESTALE; /* never loaded: no epoch to number under */
	return r;
}

/* ---- the write phase ---- */

bool rr_store_op_is_write(enum rr_store_op op)
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
		rr_put_be64(hdr, req->ts_ms ? req->ts_ms : now);
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

/* The new last id of every room this batch appended to. */
static void batch_add_last_ids(struct rr_store *s)
{
	for (uint32_t i = 0; i < s->n_rooms; i++) {
		struct room_last *r = &s->rooms[i];
		uint8_t k[RR_KEYS_MAX], v[8];

		if (!r->dirty)
			continue;
		int kl = rr_keys_room_rec(k, sizeof(k), r->room, r->room_len, RR_KEYS_ROOM_LAST);

		rr_put_be64(v, r->last);
		rocksdb_writebatch_put_cf(s->wb, s->cf[CF_ROOMS], (const char *)k, (size_t)kl,
					  (const char *)v, 8);
	}
}

/* Write s->wb (or fail it with an injected fault); logs the start and the
 * end of a burst of failures. Returns 0 or the batch's error. */
static int batch_write(struct rr_store *s, uint32_t in_batch)
{
	char *emsg = NULL;
	int err = 0;

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
			err = rr_store_rocks_errno(emsg);
			s->need_reopen = true;
		}
	}
	if (err < 0) {
		STAT_ADD(s, batch_failures, 1);
		if (!s->failing)
			rr_store_log("write of %u requests failed: %s; failing writes until the "
				     "disk recovers",
				     in_batch, emsg ? emsg : strerror(-err));
		s->failing = true;
		s->burst_failures++;
	} else if (s->failing) {
		rr_store_log("writes recovered after %llu failed batches",
			     (unsigned long long)s->burst_failures);
		s->failing = false;
		s->burst_failures = 0;
	}
	rocksdb_free(emsg);
	return err;
}

void rr_store_write_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
	uint64_t now = rr_wall_ms();
	uint32_t in_batch = 0;
	int err = 0;

	room_table_reset(s);
	rocksdb_writebatch_clear(s->wb);
	if (s->db == NULL) {
		err = -EIO;
	} else {
		for (uint32_t i = 0; i < n; i++) {
			if (!rr_store_op_is_write(reqs[i]->op))
				continue;
			reqs[i]->res = batch_add(s, reqs[i], now);
			if (reqs[i]->res == 0)
				in_batch++;
		}
	}
	if (in_batch > 0) {
		batch_add_last_ids(s);
		err = batch_write(s, in_batch);
	}
	if (err == 0)
		return;
	for (uint32_t i = 0; i < n; i++) {
		if (rr_store_op_is_write(reqs[i]->op) && reqs[i]->res == 0)
			reqs[i]->res = err;
	}
}

/* ---- room creation ---- */

/* A new room: a fresh epoch and an empty log, added to s->wb. */
static void batch_add_new_room(struct rr_store *s, struct rr_store_req *req, uint64_t now)
{
	uint8_t ek[RR_KEYS_MAX], lk[RR_KEYS_MAX], rec[RR_KEYS_EPOCH_REC], zero[8];
	int ekl = rr_keys_room_rec(ek, sizeof(ek), req->room, req->room_len, RR_KEYS_ROOM_EPOCH);
	int lkl = rr_keys_room_rec(lk, sizeof(lk), req->room, req->room_len, RR_KEYS_ROOM_LAST);

	rr_store_random_epoch(req->out.epoch);
	rr_keys_epoch_encode(rec, req->out.epoch, now);
	rr_put_be64(zero, 0);
	rocksdb_writebatch_put_cf(s->wb, s->cf[CF_ROOMS], (const char *)ek, (size_t)ekl,
				  (const char *)rec, sizeof(rec));
	rocksdb_writebatch_put_cf(s->wb, s->cf[CF_ROOMS], (const char *)lk, (size_t)lkl,
				  (const char *)zero, 8);
	req->out.created = true;
	req->out.last_id = 0;
	req->out.first_id = 1;
}

/*
 * ROOM_LOADs of the drain. Rooms that are new get their epoch records in one
 * batch, written before any of those loads completes; loads of the same new
 * room in one drain share the epoch of the first.
 */
void rr_store_room_load_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
	uint32_t creating = 0;
	uint64_t now = rr_wall_ms();

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
		req->res = rr_store_load_room(s, req, &found);
		if (req->res < 0 || found)
			continue;
		batch_add_new_room(s, req, now);
		r->creator = req;
		creating++;
	}
	if (creating == 0)
		return;

	char *emsg = NULL;

	rocksdb_write(s->db, s->wopts, s->wb, &emsg);
	if (emsg == NULL)
		return;
	int err = rr_store_rocks_errno(emsg);

	rr_store_log("creating %u rooms: %s", creating, emsg);
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

/* ---- durability barrier ---- */

char *rr_store_make_durable(struct rr_store *s)
{
	char *emsg = NULL;

	if (s->opts.durability == RR_STORE_MEMORY) {
		for (int c = 0; c < CF_COUNT && emsg == NULL; c++)
			rocksdb_flush_cf(s->db, s->fopts, s->cf[c], &emsg);
	} else {
		rocksdb_flush_wal(s->db, 1, &emsg);
	}
	return emsg;
}

void rr_store_flush_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
	bool any = false;

	/* a FLUSH already failed (the store is not writable) is not retried */
	for (uint32_t i = 0; i < n && !any; i++)
		any = reqs[i]->op == RR_STORE_FLUSH && reqs[i]->res == 0;
	if (!any)
		return;
	char *emsg = rr_store_make_durable(s);
	int err = rr_store_rocks_errno(emsg);

	if (emsg != NULL) {
		rr_store_log("flush: %s", emsg);
		rocksdb_free(emsg);
	}
	for (uint32_t i = 0; i < n; i++)
		if (reqs[i]->op == RR_STORE_FLUSH && reqs[i]->res == 0)
			reqs[i]->res = err;
}

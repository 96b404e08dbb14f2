/*
 * Reads of the storage worker: a room's log position (ROOM_LOAD), pages of
 * messages (READ_AFTER, READ_BEFORE), sessions and per-room key/value data.
 * Interface and limits in store.h.
 *
 * DESIGN: every result a request gets lives in ONE allocation (out._buf): an
 * array of rr_store_item followed by the bytes they point to, so the core
 * frees a page of a thousand messages with one free(). Rows are first
 * gathered into the worker's reusable rows/bytes buffers (the result
 * builder, rb_*), whose final size is known only at the end of the scan,
 * then copied once into the exact-size allocation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"
#include "persist/store_int.h"

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

/* ---- room position ---- */

int rr_store_get_last_id(struct rr_store *s, const char *room, size_t room_len, uint64_t *last,
			 bool *found)
{
	uint8_t k[RR_KEYS_MAX];
	int kl = rr_keys_room_rec(k, sizeof(k), room, room_len, RR_KEYS_ROOM_LAST);
	char *emsg = NULL;
	size_t vlen = 0;
	char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_ROOMS], (const char *)k, (size_t)kl,
				 &vlen, &emsg);

	if (emsg != NULL) {
		rr_store_log("reading last id: %s", emsg);
		rocksdb_free(emsg);
		return -EIO;
	}
	*found = v != NULL;
	*last = 0;
	if (v != NULL && vlen == 8)
		*last = rr_get_be64((const uint8_t *)v);
	else if (v != NULL) {
		rocksdb_free(v);
		return -EIO;
	}
	rocksdb_free(v);
	return 0;
}

rocksdb_iterator_t *rr_store_room_iter(struct rr_store *s, rocksdb_readoptions_t *ro,
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

int rr_store_iter_error(rocksdb_iterator_t *it)
{
	char *emsg = NULL;

	rocksdb_iter_get_error(it, &emsg);
	if (emsg == NULL)
		return 0;
	rr_store_log("iterator: %s", emsg);
	rocksdb_free(emsg);
	return -EIO;
}

int rr_store_first_id(struct rr_store *s, const char *room, size_t room_len, uint64_t *first)
{
	uint8_t lo[RR_KEYS_MAX], hi[RR_KEYS_MAX];
	int lol;
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = rr_store_room_iter(s, ro, room, room_len, lo, &lol, hi);
	int ret;

	*first = 0;
	rocksdb_iter_seek(it, (const char *)lo, (size_t)lol);
	if (rocksdb_iter_valid(it)) {
		size_t klen, rl;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);

		if (rr_keys_msg_decode(k, klen, &rl, first) < 0)
			*first = 0;
	}
	ret = rr_store_iter_error(it);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	return ret;
}

int rr_store_load_room(struct rr_store *s, struct rr_store_req *req, bool *found)
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
		rr_store_log("room load: %s", emsg);
		rocksdb_free(emsg);
		return -EIO;
	}
	if (v == NULL)
		return 0;
	*found = true;
	int ret = rr_keys_epoch_decode((const uint8_t *)v, vlen, req->out.epoch, &created_ms);

	rocksdb_free(v);
	if (ret < 0) {
		rr_store_log("room %.*s: corrupt epoch record", (int)req->room_len, req->room);
		return -EIO;
	}
	ret = rr_store_get_last_id(s, req->room, req->room_len, &req->out.last_id, &have_last);
	if (ret < 0)
		return ret;
	ret = rr_store_first_id(s, req->room, req->room_len, &first);
	if (ret < 0)
		return ret;
	req->out.first_id = first ? first : req->out.last_id + 1;
	return 0;
}

/* ---- message pages ---- */

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
	r->ts_ms = rr_get_be64(v);
	r->key_off = 0;
	r->key_len = 0;
	r->val_off = (uint32_t)*used;
	r->val_len = (uint32_t)(vlen - RR_KEYS_MSG_HDR);
	memcpy(s->bytes + *used, v + RR_KEYS_MSG_HDR, r->val_len);
	*used += r->val_len;
	return 0;
}

/* Copy one kv entry (the key without its room part, and the value) into
 * row n. */
static int take_kv(struct rr_store *s, rocksdb_iterator_t *it, uint32_t n, size_t *used,
		   size_t prefix)
{
	size_t klen, vlen;
	const char *k = rocksdb_iter_key(it, &klen);
	const char *v = rocksdb_iter_value(it, &vlen);
	struct rb_row *r = &s->rows[n];

	if (klen < prefix)
		return -EIO;
	if (rb_reserve(s, *used, klen - prefix + vlen) < 0)
		return -ENOMEM;
	r->id = 0;
	r->ts_ms = 0;
	r->key_off = (uint32_t)*used;
	r->key_len = (uint32_t)(klen - prefix);
	memcpy(s->bytes + *used, k + prefix, r->key_len);
	*used += r->key_len;
	r->val_off = (uint32_t)*used;
	r->val_len = (uint32_t)vlen;
	memcpy(s->bytes + *used, v, vlen);
	*used += vlen;
	return 0;
}

/*
 * One page of a positioned iterator into req's result: rows up to `limit`
 * and about RR_STORE_READ_BYTES_MAX (at least one row), walking backward for
 * history (the result is then reversed to oldest first). kv_prefix: 0 for
 * messages, else the room part to strip from kv keys. Sets out.more and
 * destroys it and ro.
 */
static int read_page(struct rr_store *s, struct rr_store_req *req, rocksdb_iterator_t *it,
		     rocksdb_readoptions_t *ro, uint32_t limit, bool backward, size_t kv_prefix)
{
	uint32_t n = 0;
	size_t used = 0;
	int ret = 0;

	while (rocksdb_iter_valid(it) && n < limit && (n == 0 || used < RR_STORE_READ_BYTES_MAX)) {
		ret = kv_prefix ? take_kv(s, it, n, &used, kv_prefix) : take_msg(s, it, n, &used);
		if (ret < 0)
			break;
		n++;
		if (backward)
			rocksdb_iter_prev(it);
		else
			rocksdb_iter_next(it);
	}
	if (ret == 0) {
		req->out.more = rocksdb_iter_valid(it);
		ret = rr_store_iter_error(it);
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	if (ret == 0)
		ret = rb_finish(s, req, n, used, backward);
	return ret;
}

static int do_read(struct rr_store *s, struct rr_store_req *req)
{
	bool after = req->op == RR_STORE_READ_AFTER;
	uint32_t max = after ? RR_STORE_READ_MAX : RR_STORE_HISTORY_READ_MAX;
	uint32_t limit = req->limit == 0 || req->limit > max ? max : req->limit;
	uint8_t lo[RR_KEYS_MAX], hi[RR_KEYS_MAX], seek[RR_KEYS_MAX];
	int lol, ret;

	if ((after && req->id == UINT64_MAX) || (!after && req->id == 1))
		return 0; /* nothing can follow the last id / precede id 1 */
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = rr_store_room_iter(s, ro, req->room, req->room_len, lo, &lol, hi);
	int sl = rr_keys_msg(seek, sizeof(seek), req->room, req->room_len,
			     after ? req->id + 1 : (req->id ? req->id - 1 : UINT64_MAX));

	if (after)
		rocksdb_iter_seek(it, (const char *)seek, (size_t)sl);
	else
		rocksdb_iter_seek_for_prev(it, (const char *)seek, (size_t)sl);
	ret = read_page(s, req, it, ro, limit, !after, 0);
	if (ret == -EIO)
		rr_store_log("room %.*s: unreadable message record", (int)req->room_len, req->room);
	return ret;
}

/* ---- sessions and kv ---- */

/* Copy a RocksDB-owned value into the request's result allocation. */
static int get_value(struct rr_store *s, enum store_cf cf, const uint8_t *k, size_t kl,
		     struct rr_store_req *req)
{
	char *emsg = NULL;
	size_t vlen = 0;
	char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[cf], (const char *)k, kl, &vlen, &emsg);

	if (emsg != NULL) {
		rr_store_log("get: %s", emsg);
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
		rr_store_log("session record corrupt");
		ret = -EIO;
	} else if (req->out.session.expiry_ms != 0 && req->out.session.expiry_ms <= rr_wall_ms()) {
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

/* Position a KV_LIST iterator: at the prefix, or just past `after`. */
static void kv_list_seek(rocksdb_iterator_t *it, const struct rr_store_req *req, const uint8_t *lo,
			 int lol)
{
	uint8_t seek[RR_KEYS_MAX];

	if (req->after == NULL) {
		rocksdb_iter_seek(it, (const char *)lo, (size_t)lol);
		return;
	}
	int sl =
	    rr_keys_kv(seek, sizeof(seek), req->room, req->room_len, req->after, req->after_len);

	rocksdb_iter_seek(it, (const char *)seek, (size_t)sl);
	size_t klen;
	const char *k = rocksdb_iter_valid(it) ? rocksdb_iter_key(it, &klen) : NULL;

	if (k != NULL && klen == (size_t)sl && memcmp(k, seek, klen) == 0)
		rocksdb_iter_next(it);
}

static int do_kv_list(struct rr_store *s, struct rr_store_req *req)
{
	uint32_t limit =
	    req->limit == 0 || req->limit > RR_STORE_LIST_MAX ? RR_STORE_LIST_MAX : req->limit;
	uint8_t lo[RR_KEYS_MAX], hi[RR_KEYS_MAX];
	int lol = rr_keys_kv(lo, sizeof(lo), req->room, req->room_len, req->key, req->key_len);
	int hl = rr_keys_prefix_end(hi, sizeof(hi), lo, (size_t)lol);
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();

	rocksdb_readoptions_set_iterate_lower_bound(ro, (const char *)lo, (size_t)lol);
	rocksdb_readoptions_set_iterate_upper_bound(ro, hl > 0 ? (const char *)hi : NULL,
						    (size_t)hl);
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_KV]);

	kv_list_seek(it, req, lo, lol);
	return read_page(s, req, it, ro, limit, false, 1 + req->room_len);
}

/* ---- the read phase ---- */

void rr_store_read_phase(struct rr_store *s, struct rr_store_req **reqs, uint32_t n)
{
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
		default:
			continue;
		}
		if (req->res < 0 && req->out._buf != NULL)
			rr_store_req_release(req);
		STAT_ADD(s, reads, 1);
	}
}

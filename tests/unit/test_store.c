/*
 * Unit tests of the storage worker (src/persist/store_*.c) against a real
 * RocksDB in a temporary dir, with completions arriving on a real io_uring
 * through MSG_RING: append and read ordering, group commit, retention,
 * sessions, kv, back-pressure, reopen, the data-dir lock, fault injection and
 * a close that drains the queue.
 */
#include "test_store_util.h"

#include <sys/wait.h>

static void check_msgs(const struct rr_store_req *req, uint64_t first, uint32_t n,
		       const char *room_tag)
{
	char want[64];

	CHECK_EQ(req->out.n_items, n);
	for (uint32_t i = 0; i < req->out.n_items && i < n; i++) {
		const struct rr_store_item *it = &req->out.items[i];

		snprintf(want, sizeof(want), "%s-%llu", room_tag, (unsigned long long)(first + i));
		CHECK_EQ(it->id, first + i);
		CHECK(it->val_len == strlen(want) && memcmp(it->val, want, it->val_len) == 0);
	}
}

static void append_range(struct rr_store *s, const char *room, const char *tag, uint64_t from,
			 uint64_t to)
{
	static struct rr_store_req reqs[512];
	static char payloads[512][64];
	uint64_t id = from;

	while (id <= to) {
		unsigned n = 0;

		for (; n < 512 && id <= to; n++, id++) {
			t_req_init(&reqs[n], RR_STORE_APPEND, room);
			snprintf(payloads[n], sizeof(payloads[n]), "%s-%llu", tag,
				 (unsigned long long)id);
			reqs[n].id = id;
			reqs[n].data = payloads[n];
			reqs[n].len = (uint32_t)strlen(payloads[n]);
			CHECK_EQ(rr_store_submit(s, &reqs[n]), 0);
		}
		CHECK_EQ(t_reap(n), n);
		for (unsigned i = 0; i < n; i++)
			CHECK_EQ(reqs[i].res, 0);
	}
}

static void test_append_and_read(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req load, rd;

	CHECK_EQ(t_room_load(s, "lobby", &load), 0);
	CHECK(load.out.created);
	CHECK_EQ(strlen(load.out.epoch), RR_STORE_EPOCH_LEN);
	CHECK_EQ(load.out.last_id, 0);
	CHECK_EQ(load.out.first_id, 1);
	char epoch[RR_STORE_EPOCH_LEN + 1];

	memcpy(epoch, load.out.epoch, sizeof(epoch));

	/* rooms sharing a prefix, written interleaved */
	struct rr_store_req l2;

	CHECK_EQ(t_room_load(s, "lobby2", &l2), 0);
	CHECK(strcmp(l2.out.epoch, epoch) != 0);
	CHECK_EQ(t_room_load(s, "lobb", &l2), 0);
	for (uint64_t k = 0; k < 6; k++) {
		append_range(s, "lobby", "L", k * 50 + 1, k * 50 + 50);
		append_range(s, "lobby2", "L2", k * 10 + 1, k * 10 + 10);
		append_range(s, "lobb", "LB", k * 5 + 1, k * 5 + 5);
	}

	t_req_init(&rd, RR_STORE_READ_AFTER, "lobby");
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 1, 300, "L");
	CHECK(!rd.out.more);
	rr_store_req_release(&rd);

	t_req_init(&rd, RR_STORE_READ_AFTER, "lobby");
	rd.id = 100;
	rd.limit = 50;
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 101, 50, "L");
	CHECK(rd.out.more);
	rr_store_req_release(&rd);
	rr_store_req_release(&rd); /* twice is fine */

	t_req_init(&rd, RR_STORE_READ_AFTER, "lobby");
	rd.id = 300;
	CHECK_EQ(t_run(s, &rd), 0);
	CHECK_EQ(rd.out.n_items, 0);
	CHECK(!rd.out.more);
	rr_store_req_release(&rd);

	/* history: newest `limit` before the id, oldest first */
	t_req_init(&rd, RR_STORE_READ_BEFORE, "lobby");
	rd.limit = 10;
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 291, 10, "L");
	CHECK(rd.out.more);
	rr_store_req_release(&rd);

	t_req_init(&rd, RR_STORE_READ_BEFORE, "lobby");
	rd.id = 5;
	rd.limit = 100;
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 1, 4, "L");
	CHECK(!rd.out.more);
	rr_store_req_release(&rd);

	t_req_init(&rd, RR_STORE_READ_BEFORE, "lobby");
	rd.id = 200;
	rd.limit = 500; /* capped at 100 */
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 100, 100, "L");
	rr_store_req_release(&rd);

	t_req_init(&rd, RR_STORE_READ_AFTER, "lobb");
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 1, 30, "LB");
	rr_store_req_release(&rd);

	/* ids stay gap-free: a gap, a repeat and an unloaded room are refused */
	CHECK_EQ(t_append(s, "lobby", 302, "gap"), -ESTALE);
	CHECK_EQ(t_append(s, "lobby", 300, "again"), -ESTALE);
	CHECK_EQ(t_append(s, "never-loaded", 1, "x"), -ESTALE);
	CHECK_EQ(t_append(s, "lobby", 301, "L-301"), 0);

	CHECK_EQ(t_room_load(s, "lobby", &load), 0);
	CHECK(!load.out.created);
	CHECK(strcmp(load.out.epoch, epoch) == 0);
	CHECK_EQ(load.out.last_id, 301);
	CHECK_EQ(load.out.first_id, 1);

	/* malformed requests are refused at submit */
	struct rr_store_req bad;

	t_req_init(&bad, RR_STORE_APPEND, "");
	bad.id = 1;
	CHECK_EQ(rr_store_submit(s, &bad), -EINVAL);
	t_req_init(&bad, RR_STORE_APPEND, "lobby");
	CHECK_EQ(rr_store_submit(s, &bad), -EINVAL); /* id 0 */
	t_req_init(&bad, RR_STORE_KV_GET, "lobby");
	CHECK_EQ(rr_store_submit(s, &bad), -EINVAL); /* no key */

	t_req_init(&rd, RR_STORE_FLUSH, NULL);
	CHECK_EQ(t_run(s, &rd), 0);
	rr_store_close(s);

	/* reopen: same epoch, same log */
	s = t_open(&o);
	CHECK_EQ(t_room_load(s, "lobby", &load), 0);
	CHECK(!load.out.created);
	CHECK(strcmp(load.out.epoch, epoch) == 0);
	CHECK_EQ(load.out.last_id, 301);
	t_req_init(&rd, RR_STORE_READ_AFTER, "lobby");
	rd.id = 250;
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 251, 51, "L");
	rr_store_req_release(&rd);
	rr_store_close(s);
}

static void test_group_commit(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req load;
	struct rr_store_stats before, after;
	static struct rr_store_req reqs[500];
	static char payloads[500][32];

	CHECK_EQ(t_room_load(s, "gc", &load), 0);
	rr_store_stats_get(s, &before);
	rr_store_pause(s, true);
	for (unsigned i = 0; i < 500; i++) {
		t_req_init(&reqs[i], RR_STORE_APPEND, "gc");
		reqs[i].id = i + 1;
		snprintf(payloads[i], sizeof(payloads[i]), "GC-%u", i + 1);
		reqs[i].data = payloads[i];
		reqs[i].len = (uint32_t)strlen(payloads[i]);
		CHECK_EQ(rr_store_submit(s, &reqs[i]), 0);
	}
	struct rr_store_stats mid;

	rr_store_stats_get(s, &mid);
	CHECK_EQ(mid.queued, 500);
	rr_store_pause(s, false);
	CHECK_EQ(t_reap(500), 500);
	rr_store_stats_get(s, &after);
	for (unsigned i = 0; i < 500; i++)
		CHECK_EQ(reqs[i].res, 0);
	uint64_t batches = after.batches - before.batches;

	printf("group commit: 500 appends in %llu batch(es)\n", (unsigned long long)batches);
	CHECK(batches >= 1 && batches < 500);
	CHECK_EQ(batches, 1); /* all 500 were queued: one drain, one WriteBatch */
	CHECK_EQ(after.batch_writes - before.batch_writes, 500);
	CHECK_EQ(after.completed - before.completed, 500);
	/* a ring that reaps takes every post at the first attempt */
	CHECK_EQ(after.post_failures, 0);
	CHECK_EQ(after.post_retries, 0);
	CHECK_EQ(after.post_pending, 0);
	CHECK_EQ(t_bad_cqes, 0);

	struct rr_store_req rd;

	t_req_init(&rd, RR_STORE_READ_AFTER, "gc");
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 1, 500, "GC");
	rr_store_req_release(&rd);
	rr_store_close(s);
}

static void test_retention(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store_req load, req, rd;

	o.history_size = 100;
	struct rr_store *s = t_open(&o);

	/* by count */
	CHECK_EQ(t_room_load(s, "cnt", &load), 0);
	append_range(s, "cnt", "C", 1, 250);
	t_req_init(&req, RR_STORE_TRIM, "cnt");
	CHECK_EQ(t_run(s, &req), 0);
	CHECK_EQ(req.out.n_deleted, 150);
	CHECK_EQ(req.out.first_id, 151);
	t_req_init(&rd, RR_STORE_READ_AFTER, "cnt");
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 151, 100, "C");
	rr_store_req_release(&rd);
	CHECK_EQ(t_room_load(s, "cnt", &load), 0);
	CHECK_EQ(load.out.first_id, 151);
	CHECK_EQ(load.out.last_id, 250);
	/* a second trim finds nothing */
	t_req_init(&req, RR_STORE_TRIM, "cnt");
	CHECK_EQ(t_run(s, &req), 0);
	CHECK_EQ(req.out.n_deleted, 0);

	/* by age: 50 messages two hours old, 10 fresh, a one-hour limit */
	static struct rr_store_req reqs[60];
	static char payloads[60][32];
	uint64_t now = t_now_ms();

	CHECK_EQ(t_room_load(s, "age", &load), 0);
	for (unsigned i = 0; i < 60; i++) {
		t_req_init(&reqs[i], RR_STORE_APPEND, "age");
		reqs[i].id = i + 1;
		reqs[i].ts_ms = i < 50 ? now - 2 * 3600 * 1000 : now;
		snprintf(payloads[i], sizeof(payloads[i]), "A-%u", i + 1);
		reqs[i].data = payloads[i];
		reqs[i].len = (uint32_t)strlen(payloads[i]);
		CHECK_EQ(rr_store_submit(s, &reqs[i]), 0);
	}
	CHECK_EQ(t_reap(60), 60);
	t_req_init(&rd, RR_STORE_READ_AFTER, "age");
	rd.id = 49;
	rd.limit = 2;
	CHECK_EQ(t_run(s, &rd), 0);
	CHECK_EQ(rd.out.n_items, 2);
	if (rd.out.n_items == 2) {
		CHECK(rd.out.items[0].ts_ms == now - 2 * 3600 * 1000);
		CHECK(rd.out.items[1].ts_ms == now);
	}
	rr_store_req_release(&rd);
	t_req_init(&req, RR_STORE_TRIM, "age");
	req.ttl_ms = 3600 * 1000;
	CHECK_EQ(t_run(s, &req), 0);
	CHECK_EQ(req.out.n_deleted, 50);
	CHECK_EQ(req.out.first_id, 51);
	t_req_init(&rd, RR_STORE_READ_AFTER, "age");
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 51, 10, "A");
	rr_store_req_release(&rd);

	/* unknown room: nothing to do */
	t_req_init(&req, RR_STORE_TRIM, "nosuchroom");
	CHECK_EQ(t_run(s, &req), 0);
	CHECK_EQ(req.out.n_deleted, 0);
	rr_store_close(s);

	/* the periodic sweep trims every room without being asked */
	o.history_size = 10;
	o.trim_interval_ms = 100;
	s = t_open(&o);
	CHECK_EQ(t_room_load(s, "sweep", &load), 0);
	append_range(s, "sweep", "S", 1, 30);
	uint64_t first = 0;

	for (int i = 0; i < 50 && first != 21; i++) {
		usleep(50 * 1000);
		CHECK_EQ(t_room_load(s, "sweep", &load), 0);
		first = load.out.first_id;
	}
	CHECK_EQ(first, 21);
	CHECK_EQ(t_room_load(s, "cnt", &load), 0);
	CHECK_EQ(load.out.first_id, 241);
	struct rr_store_stats st;

	rr_store_stats_get(s, &st);
	CHECK(st.trimmed >= 20 + 90);
	rr_store_close(s);
}

/* The sweep walks every room, SWEEP_ROOMS_STEP at a time. */
static void test_sweep_many_rooms(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	static struct rr_store_req reqs[1024];
	static char rooms[600][16], payload[] = "x";
	struct rr_store_req load;

	o.history_size = 3;
	o.trim_interval_ms = 100;
	struct rr_store *s = t_open(&o);

	for (unsigned r = 0; r < 600; r++) {
		snprintf(rooms[r], sizeof(rooms[r]), "room-%u", r);
		t_req_init(&reqs[r], RR_STORE_ROOM_LOAD, rooms[r]);
		CHECK_EQ(rr_store_submit(s, &reqs[r]), 0);
	}
	CHECK_EQ(t_reap(600), 600);
	for (unsigned id = 1; id <= 5; id++) {
		for (unsigned r = 0; r < 600; r++) {
			t_req_init(&reqs[r], RR_STORE_APPEND, rooms[r]);
			reqs[r].id = id;
			reqs[r].data = payload;
			reqs[r].len = 1;
			CHECK_EQ(rr_store_submit(s, &reqs[r]), 0);
		}
		CHECK_EQ(t_reap(600), 600);
		for (unsigned r = 0; r < 600; r++)
			CHECK_EQ(reqs[r].res, 0);
	}
	struct rr_store_stats st;

	for (int i = 0; i < 100; i++) {
		rr_store_stats_get(s, &st);
		if (st.trimmed >= 600 * 2)
			break;
		usleep(50 * 1000);
	}
	CHECK_EQ(st.trimmed, 600 * 2);
	CHECK_EQ(t_room_load(s, "room-0", &load), 0);
	CHECK_EQ(load.out.first_id, 3);
	CHECK_EQ(t_room_load(s, "room-599", &load), 0);
	CHECK_EQ(load.out.first_id, 3);
	CHECK_EQ(load.out.last_id, 5);
	rr_store_close(s);
}

/* READ_AFTER stops near RR_STORE_READ_BYTES_MAX and says so. */
static void test_read_byte_cap(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req load, rd, app;
	char *big = malloc(1u << 20);

	memset(big, 'b', 1u << 20);
	CHECK_EQ(t_room_load(s, "big", &load), 0);
	for (uint64_t id = 1; id <= 6; id++) {
		t_req_init(&app, RR_STORE_APPEND, "big");
		app.id = id;
		app.data = big;
		app.len = 1u << 20;
		CHECK_EQ(t_run(s, &app), 0);
	}
	t_req_init(&rd, RR_STORE_READ_AFTER, "big");
	CHECK_EQ(t_run(s, &rd), 0);
	CHECK_EQ(rd.out.n_items, RR_STORE_READ_BYTES_MAX >> 20);
	CHECK(rd.out.more);
	CHECK(rd.out.items[0].val_len == 1u << 20 && rd.out.items[0].val[12345] == 'b');
	uint64_t next = rd.out.items[rd.out.n_items - 1].id;

	rr_store_req_release(&rd);
	t_req_init(&rd, RR_STORE_READ_AFTER, "big");
	rd.id = next;
	CHECK_EQ(t_run(s, &rd), 0);
	CHECK_EQ(rd.out.n_items, 6 - next);
	CHECK(!rd.out.more);
	rr_store_req_release(&rd);
	free(big);
	rr_store_close(s);
}

static void test_sessions_and_kv(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req req;
	struct rr_store_session ss = {
	    .room = "lobby",
	    .room_len = 5,
	    .attachment = (const uint8_t *)"{\"name\":\"alice\"}",
	    .attachment_len = 16,
	    .tags = (const uint8_t *)"mod",
	    .tags_len = 3,
	    .last_id = 77,
	    .expiry_ms = t_now_ms() + 3600 * 1000,
	};

	memset(ss.resume_hash, 0xab, sizeof(ss.resume_hash));
	t_req_init(&req, RR_STORE_SESSION_PUT, NULL);
	req.key = "sess-1";
	req.key_len = 6;
	req.session = &ss;
	CHECK_EQ(t_run(s, &req), 0);

	t_req_init(&req, RR_STORE_SESSION_GET, NULL);
	req.key = "sess-1";
	req.key_len = 6;
	CHECK_EQ(t_run(s, &req), 0);
	const struct rr_store_session *g = &req.out.session;

	CHECK(g->room_len == 5 && memcmp(g->room, "lobby", 5) == 0);
	CHECK(g->attachment_len == 16 && memcmp(g->attachment, ss.attachment, 16) == 0);
	CHECK(g->tags_len == 3 && memcmp(g->tags, "mod", 3) == 0);
	CHECK_EQ(g->last_id, 77);
	CHECK(g->expiry_ms == ss.expiry_ms);
	CHECK(memcmp(g->resume_hash, ss.resume_hash, 32) == 0);
	rr_store_req_release(&req);

	/* expired: reported absent */
	struct rr_store_session old = ss;

	old.expiry_ms = t_now_ms() - 1000;
	t_req_init(&req, RR_STORE_SESSION_PUT, NULL);
	req.key = "sess-old";
	req.key_len = 8;
	req.session = &old;
	CHECK_EQ(t_run(s, &req), 0);
	t_req_init(&req, RR_STORE_SESSION_GET, NULL);
	req.key = "sess-old";
	req.key_len = 8;
	CHECK_EQ(t_run(s, &req), -ENOENT);
	CHECK(req.out._buf == NULL);

	t_req_init(&req, RR_STORE_SESSION_DEL, NULL);
	req.key = "sess-1";
	req.key_len = 6;
	CHECK_EQ(t_run(s, &req), 0);
	t_req_init(&req, RR_STORE_SESSION_GET, NULL);
	req.key = "sess-1";
	req.key_len = 6;
	CHECK_EQ(t_run(s, &req), -ENOENT);

	/* kv */
	static const char *const keys[] = {"b", "a", "ab", "a\xff", "c"};

	for (unsigned i = 0; i < 5; i++) {
		t_req_init(&req, RR_STORE_KV_PUT, "room1");
		req.key = keys[i];
		req.key_len = (uint32_t)strlen(keys[i]);
		req.data = "v";
		req.len = 1;
		CHECK_EQ(t_run(s, &req), 0);
	}
	t_req_init(&req, RR_STORE_KV_PUT, "room10"); /* must not show up in room1 */
	req.key = "a";
	req.key_len = 1;
	req.data = "other";
	req.len = 5;
	CHECK_EQ(t_run(s, &req), 0);
	t_req_init(&req, RR_STORE_KV_PUT, "room1");
	req.key = "a";
	req.key_len = 1;
	req.data = "value-a";
	req.len = 7;
	CHECK_EQ(t_run(s, &req), 0);

	t_req_init(&req, RR_STORE_KV_GET, "room1");
	req.key = "a";
	req.key_len = 1;
	CHECK_EQ(t_run(s, &req), 0);
	CHECK(req.out.val_len == 7 && memcmp(req.out.val, "value-a", 7) == 0);
	rr_store_req_release(&req);

	t_req_init(&req, RR_STORE_KV_LIST, "room1");
	req.key = "a";
	req.key_len = 1;
	CHECK_EQ(t_run(s, &req), 0);
	CHECK_EQ(req.out.n_items, 3); /* a, ab, a\xff */
	if (req.out.n_items == 3) {
		CHECK(req.out.items[0].key_len == 1 && req.out.items[0].key[0] == 'a');
		CHECK(req.out.items[0].val_len == 7);
		CHECK(req.out.items[1].key_len == 2 && memcmp(req.out.items[1].key, "ab", 2) == 0);
		CHECK(req.out.items[2].key_len == 2 && req.out.items[2].key[1] == 0xff);
	}
	rr_store_req_release(&req);

	/* paging: everything after "ab", two at a time */
	t_req_init(&req, RR_STORE_KV_LIST, "room1");
	req.after = "ab";
	req.after_len = 2;
	req.limit = 2;
	CHECK_EQ(t_run(s, &req), 0);
	CHECK_EQ(req.out.n_items, 2);
	CHECK(req.out.more);
	if (req.out.n_items == 2) {
		CHECK(req.out.items[0].key_len == 2 && req.out.items[0].key[1] == 0xff);
		CHECK(req.out.items[1].key_len == 1 && req.out.items[1].key[0] == 'b');
	}
	rr_store_req_release(&req);

	t_req_init(&req, RR_STORE_KV_DEL, "room1");
	req.key = "a";
	req.key_len = 1;
	CHECK_EQ(t_run(s, &req), 0);
	t_req_init(&req, RR_STORE_KV_GET, "room1");
	req.key = "a";
	req.key_len = 1;
	CHECK_EQ(t_run(s, &req), -ENOENT);
	t_req_init(&req, RR_STORE_KV_GET, "room10");
	req.key = "a";
	req.key_len = 1;
	CHECK_EQ(t_run(s, &req), 0);
	CHECK(req.out.val_len == 5 && memcmp(req.out.val, "other", 5) == 0);
	rr_store_req_release(&req);
	rr_store_close(s);
}

static void test_back_pressure(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);

	o.queue_capacity = 8;
	struct rr_store *s = t_open(&o);
	struct rr_store_req reqs[12];
	struct rr_store_stats st;

	rr_store_pause(s, true);
	for (unsigned i = 0; i < 8; i++) {
		t_req_init(&reqs[i], RR_STORE_ROOM_LOAD, "bp");
		CHECK_EQ(rr_store_submit(s, &reqs[i]), 0);
	}
	t_req_init(&reqs[8], RR_STORE_ROOM_LOAD, "bp");
	CHECK_EQ(rr_store_submit(s, &reqs[8]), -EAGAIN);
	CHECK_EQ(rr_store_submit(s, &reqs[8]), -EAGAIN);
	/* the quota is per core: core 1 still gets in */
	t_req_init(&reqs[9], RR_STORE_ROOM_LOAD, "bp");
	reqs[9].core = 1;
	CHECK_EQ(rr_store_submit(s, &reqs[9]), 0);
	rr_store_stats_get(s, &st);
	CHECK_EQ(st.rejected, 2);
	CHECK_EQ(st.queued, 9);
	rr_store_pause(s, false);
	CHECK_EQ(t_reap(9), 9);
	/* the first load created the room; the others found it */
	unsigned created = 0;

	for (unsigned i = 0; i < 10; i++)
		if (i != 8)
			created += reqs[i].out.created;
	CHECK_EQ(created, 1);
	CHECK(strcmp(reqs[0].out.epoch, reqs[9].out.epoch) == 0);
	/* room again */
	CHECK_EQ(rr_store_submit(s, &reqs[8]), 0);
	CHECK_EQ(t_reap(1), 1);
	rr_store_close(s);
}

static void test_lock(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s, *s2 = NULL;
	char err[512] = "";
	int go[2];

	/* another process: forked before this one touches RocksDB, so it has
	 * none of RocksDB's in-process lock state and meets the LOCK file */
	CHECK_EQ(pipe(go), 0);
	fflush(NULL);
	pid_t pid = fork();

	if (pid == 0) {
		char cerr[512] = "", c;
		int ret = -1;

		close(go[1]);
		if (read(go[0], &c, 1) == 1)
			ret = rr_store_open(&s2, &o, cerr, sizeof(cerr));
		printf("second process: %s\n", cerr);
		fflush(stdout);
		_exit(ret == -EBUSY && strstr(cerr, "in use by another ringroom (RocksDB lock)")
			  ? 0
			  : 1);
	}
	close(go[0]);
	s = t_open(&o);
	CHECK_EQ(write(go[1], "g", 1), 1);
	close(go[1]);
	int status = 0;

	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* same process */
	CHECK_EQ(rr_store_open(&s2, &o, err, sizeof(err)), -EBUSY);
	CHECK(s2 == NULL);
	CHECK(strstr(err, "is in use by another ringroom (RocksDB lock)") != NULL);
	CHECK(strstr(err, dir) != NULL);
	printf("second open: %s\n", err);
	rr_store_close(s);

	/* once closed, it opens again */
	s = t_open(&o);
	rr_store_close(s);
}

static void test_fault_injection(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req load, reqs[6], rd;
	struct rr_store_stats st;

	CHECK_EQ(t_room_load(s, "f", &load), 0);
	CHECK_EQ(t_append(s, "f", 1, "F-1"), 0);

	rr_store_inject_fault(s, -ENOSPC, 1);
	rr_store_pause(s, true);
	for (unsigned i = 0; i < 5; i++) {
		t_req_init(&reqs[i], RR_STORE_APPEND, "f");
		reqs[i].id = 2 + i;
		reqs[i].data = "lost";
		reqs[i].len = 4;
		CHECK_EQ(rr_store_submit(s, &reqs[i]), 0);
	}
	t_req_init(&reqs[5], RR_STORE_KV_PUT, "f");
	reqs[5].key = "k";
	reqs[5].key_len = 1;
	reqs[5].data = "lost";
	reqs[5].len = 4;
	CHECK_EQ(rr_store_submit(s, &reqs[5]), 0);
	rr_store_pause(s, false);
	CHECK_EQ(t_reap(6), 6);
	for (unsigned i = 0; i < 6; i++)
		CHECK_EQ(reqs[i].res, -ENOSPC);
	rr_store_stats_get(s, &st);
	CHECK_EQ(st.batch_failures, 1);

	/* nothing of that batch is stored */
	t_req_init(&rd, RR_STORE_READ_AFTER, "f");
	CHECK_EQ(t_run(s, &rd), 0);
	CHECK_EQ(rd.out.n_items, 1);
	rr_store_req_release(&rd);
	CHECK_EQ(t_room_load(s, "f", &load), 0);
	CHECK_EQ(load.out.last_id, 1);
	t_req_init(&rd, RR_STORE_KV_GET, "f");
	rd.key = "k";
	rd.key_len = 1;
	CHECK_EQ(t_run(s, &rd), -ENOENT);

	/* the next batch succeeds, numbering from the stored last id */
	CHECK_EQ(t_append(s, "f", 3, "gap"), -ESTALE);
	CHECK_EQ(t_append(s, "f", 2, "F-2"), 0);

	/* a burst of three failing batches, then recovery */
	rr_store_inject_fault(s, -EIO, 3);
	CHECK_EQ(t_append(s, "f", 3, "x"), -EIO);
	CHECK_EQ(t_append(s, "f", 3, "x"), -EIO);
	CHECK_EQ(t_append(s, "f", 3, "x"), -EIO);
	CHECK_EQ(t_append(s, "f", 3, "F-3"), 0);
	t_req_init(&rd, RR_STORE_READ_AFTER, "f");
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 1, 3, "F");
	rr_store_req_release(&rd);
	rr_store_close(s);
}

/* Close with requests still queued: every one completes, then is on disk. */
static void test_close_drains(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req load;
	static struct rr_store_req reqs[200];
	static char payloads[200][32];

	CHECK_EQ(t_room_load(s, "drain", &load), 0);
	rr_store_pause(s, true);
	for (unsigned i = 0; i < 200; i++) {
		t_req_init(&reqs[i], RR_STORE_APPEND, "drain");
		reqs[i].id = i + 1;
		snprintf(payloads[i], sizeof(payloads[i]), "D-%u", i + 1);
		reqs[i].data = payloads[i];
		reqs[i].len = (uint32_t)strlen(payloads[i]);
		CHECK_EQ(rr_store_submit(s, &reqs[i]), 0);
	}
	rr_store_close(s); /* resumes the worker, drains, then closes */
	CHECK_EQ(t_reap(200), 200);
	for (unsigned i = 0; i < 200; i++)
		CHECK_EQ(reqs[i].res, 0);

	s = t_open(&o);
	struct rr_store_req rd;

	t_req_init(&rd, RR_STORE_READ_AFTER, "drain");
	CHECK_EQ(t_run(s, &rd), 0);
	check_msgs(&rd, 1, 200, "D");
	rr_store_req_release(&rd);
	rr_store_close(s);
}

/* A completion can run on the worker thread for code with no ring. */
static unsigned worker_done_calls;
static void worker_done(struct rr_store_req *req)
{
	(void)req;
	__atomic_fetch_add(&worker_done_calls, 1, __ATOMIC_SEQ_CST);
}

static void test_no_ring(const char *dir)
{
	struct rr_store_opts o = t_base_opts(dir);
	struct rr_store *s = t_open(&o);
	struct rr_store_req req;

	t_req_init(&req, RR_STORE_ROOM_LOAD, "noring");
	req.reply_ring_fd = -1;
	req.done = worker_done;
	CHECK_EQ(rr_store_submit(s, &req), 0);
	for (int i = 0; i < 1000 && __atomic_load_n(&worker_done_calls, __ATOMIC_SEQ_CST) == 0; i++)
		usleep(1000);
	CHECK_EQ(__atomic_load_n(&worker_done_calls, __ATOMIC_SEQ_CST), 1);
	CHECK_EQ(req.res, 0);
	CHECK(req.out.created);
	rr_store_close(s);
}

static void test_durability_names(void)
{
	enum rr_store_durability d;

	CHECK_EQ(rr_store_durability_parse("memory", &d), 0);
	CHECK_EQ(d, RR_STORE_MEMORY);
	CHECK_EQ(rr_store_durability_parse("sync", &d), 0);
	CHECK_EQ(d, RR_STORE_SYNC);
	CHECK_EQ(rr_store_durability_parse("fsync", &d), -EINVAL);
	CHECK(strcmp(rr_store_durability_name(RR_STORE_ASYNC), "async") == 0);
}

int main(void)
{
	t_ring_init();
	test_durability_names();

#define RUN(fn) t_in_tmpdir(fn, "store")

	RUN(test_append_and_read);
	RUN(test_group_commit);
	RUN(test_retention);
	RUN(test_sweep_many_rooms);
	RUN(test_read_byte_cap);
	RUN(test_sessions_and_kv);
	RUN(test_back_pressure);
	RUN(test_lock);
	RUN(test_fault_injection);
	RUN(test_close_drains);
	RUN(test_no_ring);
	CHECK_EQ(t_bad_cqes, 0);
	io_uring_queue_exit(&t_ring);
	return check_done();
}

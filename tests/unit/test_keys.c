/*
 * Unit tests of the store's key and value encodings (src/persist/keys.c):
 * ids sort numerically, rooms sharing a prefix never interleave, prefix upper
 * bounds are tight, and record decoders reject every truncation.
 */
#include "../../src/persist/keys.c"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static int keycmp(const uint8_t *a, int al, const uint8_t *b, int bl)
{
	int n = al < bl ? al : bl;
	int c = memcmp(a, b, (size_t)n);

	return c != 0 ? c : al - bl;
}

static void test_ids_sort_numerically(void)
{
	static const uint64_t ids[] = {0,
				       1,
				       2,
				       9,
				       10,
				       255,
				       256,
				       257,
				       65535,
				       65536,
				       UINT64_C(1) << 32,
				       (UINT64_C(1) << 32) + 1,
				       UINT64_MAX - 1,
				       UINT64_MAX};
	uint8_t a[RR_KEYS_MAX], b[RR_KEYS_MAX];

	for (size_t i = 0; i + 1 < sizeof(ids) / sizeof(ids[0]); i++) {
		int al = rr_keys_msg(a, sizeof(a), "room", 4, ids[i]);
		int bl = rr_keys_msg(b, sizeof(b), "room", 4, ids[i + 1]);

		CHECK_EQ(al, 1 + 4 + 8);
		CHECK(keycmp(a, al, b, bl) < 0);

		size_t rl;
		uint64_t id = 0;

		CHECK_EQ(rr_keys_msg_decode(a, (size_t)al, &rl, &id), 0);
		CHECK_EQ(rl, 4);
		CHECK(id == ids[i]);
	}
	/* pseudo-random pairs */
	uint64_t x = 88172645463325252ull;

	for (int i = 0; i < 10000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint64_t p = x >> (x & 63);

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint64_t q = x >> (x & 63);
		int al = rr_keys_msg(a, sizeof(a), "r", 1, p);
		int bl = rr_keys_msg(b, sizeof(b), "r", 1, q);
		int c = keycmp(a, al, b, bl);

		CHECK((p < q && c < 0) || (p == q && c == 0) || (p > q && c > 0));
	}
}

/* Every key of one room lies inside [prefix, prefix_end), and no key of
 * another room does, whatever the ids. */
static void test_rooms_do_not_interleave(void)
{
	static const char *const rooms[] = {"a",     "ab", "abc",	 "ab\xff", "b",
					    "a\x01", "aa", "ab\xff\xff", "\xff",   "\xff\xff"};
	static const uint64_t ids[] = {0, 1, 0x100, UINT64_MAX};
	size_t nrooms = sizeof(rooms) / sizeof(rooms[0]);

	for (size_t r = 0; r < nrooms; r++) {
		uint8_t lo[RR_KEYS_MAX], hi[RR_KEYS_MAX], k[RR_KEYS_MAX];
		int lol = rr_keys_room(lo, sizeof(lo), rooms[r], strlen(rooms[r]));
		int hil = rr_keys_prefix_end(hi, sizeof(hi), lo, (size_t)lol);

		CHECK(lol > 0);
		CHECK(hil > 0); /* the length byte is never 0xff for rooms <= 255 */
		for (size_t o = 0; o < nrooms; o++) {
			for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
				int kl =
				    rr_keys_msg(k, sizeof(k), rooms[o], strlen(rooms[o]), ids[i]);
				bool inside =
				    keycmp(k, kl, lo, lol) >= 0 && keycmp(k, kl, hi, hil) < 0;

				CHECK(inside == (o == r));
				kl = rr_keys_kv(k, sizeof(k), rooms[o], strlen(rooms[o]), "key", 3);
				inside = keycmp(k, kl, lo, lol) >= 0 && keycmp(k, kl, hi, hil) < 0;
				CHECK(inside == (o == r));
			}
		}
	}
}

static void test_limits(void)
{
	uint8_t k[RR_KEYS_MAX];
	char room[300], key[RR_STORE_KEY_MAX + 1];

	memset(room, 'x', sizeof(room));
	memset(key, 'k', sizeof(key));
	CHECK_EQ(rr_keys_room(k, sizeof(k), room, 0), -EINVAL);
	CHECK_EQ(rr_keys_room(k, sizeof(k), room, 255), 256);
	CHECK_EQ(rr_keys_room(k, sizeof(k), room, 256), -EINVAL);
	CHECK_EQ(rr_keys_msg(k, 12, room, 4, 1), -ENOBUFS);
	CHECK_EQ(rr_keys_msg(k, 13, room, 4, 1), 13);
	CHECK_EQ(rr_keys_kv(k, sizeof(k), room, 4, key, RR_STORE_KEY_MAX + 1), -EINVAL);
	CHECK_EQ(rr_keys_kv(k, sizeof(k), room, 255, key, RR_STORE_KEY_MAX), RR_KEYS_MAX);
	CHECK_EQ(rr_keys_room_rec(k, sizeof(k), "abc", 3, RR_KEYS_ROOM_LAST), 5);
	CHECK_EQ(k[4], 'L');

	/* prefix_end carries over 0xff and reports "no bound" for all-0xff */
	uint8_t p[3] = {1, 0xff, 0xff}, e[3];

	CHECK_EQ(rr_keys_prefix_end(e, sizeof(e), p, 3), 1);
	CHECK_EQ(e[0], 2);
	uint8_t ff[2] = {0xff, 0xff};

	CHECK_EQ(rr_keys_prefix_end(e, sizeof(e), ff, 2), 0);
	CHECK_EQ(rr_keys_prefix_end(e, 1, p, 3), -ENOBUFS);

	/* decoders refuse what is not theirs */
	size_t rl;
	uint64_t id;
	const char *rn;
	char tag = 0;

	CHECK_EQ(rr_keys_msg_decode(k, 5, &rl, &id), -EBADMSG);
	int kl = rr_keys_msg(k, sizeof(k), "abc", 3, 7);

	CHECK_EQ(rr_keys_msg_decode(k, (size_t)kl - 1, &rl, &id), -EBADMSG);
	CHECK_EQ(rr_keys_room_rec_decode(k, (size_t)kl, &rn, &rl, &tag), -EBADMSG);
	kl = rr_keys_room_rec(k, sizeof(k), "abc", 3, RR_KEYS_ROOM_EPOCH);
	CHECK_EQ(rr_keys_room_rec_decode(k, (size_t)kl, &rn, &rl, &tag), 0);
	CHECK(rl == 3 && memcmp(rn, "abc", 3) == 0 && tag == 'E');
	static const uint8_t state[] = {0, 's', 't'};

	CHECK_EQ(rr_keys_room_rec_decode(state, sizeof(state), &rn, &rl, &tag), -EBADMSG);

	/* alarms sort by due time within a room */
	uint8_t a1[RR_KEYS_MAX], a2[RR_KEYS_MAX];
	int l1 = rr_keys_alarm(a1, sizeof(a1), "r", 1, 1000, 5);
	int l2 = rr_keys_alarm(a2, sizeof(a2), "r", 1, 1001, 0);

	CHECK(keycmp(a1, l1, a2, l2) < 0);
}

static void test_epoch_record(void)
{
	uint8_t rec[RR_KEYS_EPOCH_REC];
	char epoch[RR_STORE_EPOCH_LEN + 1];
	uint64_t created = 0;

	rr_keys_epoch_encode(rec, "0123456789abcdef", 1700000000123ull);
	CHECK_EQ(rr_keys_epoch_decode(rec, sizeof(rec), epoch, &created), 0);
	CHECK(strcmp(epoch, "0123456789abcdef") == 0);
	CHECK(created == 1700000000123ull);
	CHECK_EQ(rr_keys_epoch_decode(rec, sizeof(rec) - 1, epoch, &created), -EBADMSG);
	rec[0] = 2;
	CHECK_EQ(rr_keys_epoch_decode(rec, sizeof(rec), epoch, &created), -EBADMSG);
}

static void test_session_record(void)
{
	struct rr_store_session in =
				    {
					.room = "lobby",
					.room_len = 5,
					.attachment = (const uint8_t *)"{\"u\":1}",
					.attachment_len = 7,
					.tags = (const uint8_t *)"a\0b",
					.tags_len = 3,
					.last_id = 41,
					.expiry_ms = 1700000000000ull,
				    },
				out;

	for (int i = 0; i < 32; i++)
		in.resume_hash[i] = (uint8_t)(i * 7);
	size_t n = rr_keys_session_size(&in);
	uint8_t *buf = malloc(n);

	CHECK_EQ(rr_keys_session_encode(buf, n - 1, &in), -ENOBUFS);
	CHECK_EQ(rr_keys_session_encode(buf, n, &in), 0);
	CHECK_EQ(rr_keys_session_decode(buf, n, &out), 0);
	CHECK(out.room_len == 5 && memcmp(out.room, "lobby", 5) == 0);
	CHECK(out.attachment_len == 7 && memcmp(out.attachment, "{\"u\":1}", 7) == 0);
	CHECK(out.tags_len == 3 && memcmp(out.tags, "a\0b", 3) == 0);
	CHECK(out.last_id == 41 && out.expiry_ms == 1700000000000ull);
	CHECK(memcmp(out.resume_hash, in.resume_hash, 32) == 0);

	/* every truncation and one extra byte are rejected */
	for (size_t cut = 0; cut < n; cut++)
		CHECK_EQ(rr_keys_session_decode(buf, cut, &out), -EBADMSG);
	uint8_t *longer = malloc(n + 1);

	memcpy(longer, buf, n);
	longer[n] = 0;
	CHECK_EQ(rr_keys_session_decode(longer, n + 1, &out), -EBADMSG);
	/* a length field pointing past the end */
	buf[1] = 0x7f;
	CHECK_EQ(rr_keys_session_decode(buf, n, &out), -EBADMSG);
	free(longer);
	free(buf);

	/* empty fields round-trip */
	struct rr_store_session empty = {0};
	uint8_t small[128];

	CHECK_EQ(rr_keys_session_encode(small, sizeof(small), &empty), 0);
	CHECK_EQ(rr_keys_session_decode(small, rr_keys_session_size(&empty), &out), 0);
	CHECK(out.room_len == 0 && out.attachment_len == 0 && out.tags_len == 0);
}

int main(void)
{
	test_ids_sort_numerically();
	test_rooms_do_not_interleave();
	test_limits();
	test_epoch_record();
	test_session_record();
	return check_done();
}

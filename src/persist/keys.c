/*
 * Key and value encodings of the store's column families (layout in keys.h).
 * Every function here is pure and bounds-checked against its output capacity;
 * decoders never trust stored bytes (a corrupt record is -EBADMSG, not a
 * crash).
 */
#include "persist/keys.h"

#include <errno.h>
#include <string.h>

static int room_prefix(uint8_t *buf, size_t cap, const char *room, size_t room_len, size_t extra)
{
	if (room == NULL || room_len == 0 || room_len > RR_STORE_ROOM_MAX)
		return -EINVAL;
	if (cap < 1 + room_len + extra)
		return -ENOBUFS;
	buf[0] = (uint8_t)room_len;
	memcpy(buf + 1, room, room_len);
	return (int)(1 + room_len);
}

int rr_keys_room(uint8_t *buf, size_t cap, const char *room, size_t room_len)
{
	return room_prefix(buf, cap, room, room_len, 0);
}

int rr_keys_msg(uint8_t *buf, size_t cap, const char *room, size_t room_len, uint64_t id)
{
	int n = room_prefix(buf, cap, room, room_len, 8);

	if (n < 0)
		return n;
	rr_put_be64(buf + n, id);
	return n + 8;
}

int rr_keys_room_rec(uint8_t *buf, size_t cap, const char *room, size_t room_len, char tag)
{
	int n = room_prefix(buf, cap, room, room_len, 1);

	if (n < 0)
		return n;
	buf[n] = (uint8_t)tag;
	return n + 1;
}

int rr_keys_kv(uint8_t *buf, size_t cap, const char *room, size_t room_len, const void *key,
	       size_t key_len)
{
	if (key_len > RR_STORE_KEY_MAX || (key_len > 0 && key == NULL))
		return -EINVAL;
	int n = room_prefix(buf, cap, room, room_len, key_len);

	if (n < 0)
		return n;
	if (key_len > 0)
		memcpy(buf + n, key, key_len);
	return n + (int)key_len;
}

int rr_keys_alarm(uint8_t *buf, size_t cap, const char *room, size_t room_len, uint64_t due_ms,
		  uint64_t seq)
{
	int n = room_prefix(buf, cap, room, room_len, 16);

	if (n < 0)
		return n;
	rr_put_be64(buf + n, due_ms);
	rr_put_be64(buf + n + 8, seq);
	return n + 16;
}

int rr_keys_prefix_end(uint8_t *buf, size_t cap, const uint8_t *prefix, size_t plen)
{
	if (cap < plen)
		return -ENOBUFS;
	memcpy(buf, prefix, plen);
	/* bounded by plen: walk back over 0xff bytes, which cannot be bumped */
	for (size_t i = plen; i > 0; i--) {
		if (buf[i - 1] != 0xff) {
			buf[i - 1]++;
			return (int)i;
		}
	}
	return 0;
}

int rr_keys_msg_decode(const uint8_t *key, size_t klen, size_t *room_len, uint64_t *id)
{
	if (klen < 1 + 1 + 8 || key[0] == 0 || klen != 1 + (size_t)key[0] + 8)
		return -EBADMSG;
	*room_len = key[0];
	*id = rr_get_be64(key + 1 + key[0]);
	return 0;
}

int rr_keys_room_rec_decode(const uint8_t *key, size_t klen, const char **room, size_t *room_len,
			    char *tag)
{
	if (klen < 3 || key[0] == 0 || klen != 1 + (size_t)key[0] + 1)
		return -EBADMSG;
	*room = (const char *)key + 1;
	*room_len = key[0];
	*tag = (char)key[klen - 1];
	return 0;
}

void rr_keys_epoch_encode(uint8_t *buf, const char *epoch, uint64_t created_ms)
{
	buf[0] = 1;
	memcpy(buf + 1, epoch, RR_STORE_EPOCH_LEN);
	rr_put_be64(buf + 1 + RR_STORE_EPOCH_LEN, created_ms);
}

int rr_keys_epoch_decode(const uint8_t *val, size_t len, char *epoch, uint64_t *created_ms)
{
	if (len != RR_KEYS_EPOCH_REC || val[0] != 1)
		return -EBADMSG;
	memcpy(epoch, val + 1, RR_STORE_EPOCH_LEN);
	epoch[RR_STORE_EPOCH_LEN] = '\0';
	*created_ms = rr_get_be64(val + 1 + RR_STORE_EPOCH_LEN);
	return 0;
}

/* session record: [1][be32 n][room][be32 n][attachment][be32 n][tags]
 *                 [be64 last_id][be64 expiry_ms][32 resume_hash] */
#define SESSION_FIXED (1 + 4 + 4 + 4 + 8 + 8 + 32)

size_t rr_keys_session_size(const struct rr_store_session *ss)
{
	return SESSION_FIXED + (size_t)ss->room_len + ss->attachment_len + ss->tags_len;
}

static uint8_t *put_blob(uint8_t *p, const void *data, uint32_t len)
{
	rr_put_be32(p, len);
	if (len > 0)
		memcpy(p + 4, data, len);
	return p + 4 + len;
}

int rr_keys_session_encode(uint8_t *buf, size_t cap, const struct rr_store_session *ss)
{
	if (cap < rr_keys_session_size(ss))
		return -ENOBUFS;
	uint8_t *p = buf;

	*p++ = 1;
	p = put_blob(p, ss->room, ss->room_len);
	p = put_blob(p, ss->attachment, ss->attachment_len);
	p = put_blob(p, ss->tags, ss->tags_len);
	rr_put_be64(p, ss->last_id);
	rr_put_be64(p + 8, ss->expiry_ms);
	memcpy(p + 16, ss->resume_hash, sizeof(ss->resume_hash));
	return 0;
}

/* Take a length-prefixed blob at *p, checking it against the end. */
static int get_blob(const uint8_t **p, const uint8_t *end, const uint8_t **data, uint32_t *len)
{
	if (end - *p < 4)
		return -EBADMSG;
	uint32_t n = rr_get_be32(*p);

	if ((size_t)(end - *p - 4) < n)
		return -EBADMSG;
	*data = *p + 4;
	*len = n;
	*p += 4 + (size_t)n;
	return 0;
}

int rr_keys_session_decode(const uint8_t *val, size_t len, struct rr_store_session *ss)
{
	const uint8_t *p = val, *end = val + len;
	const uint8_t *room;

	if (len < SESSION_FIXED || val[0] != 1)
		return -EBADMSG;
	p++;
	if (get_blob(&p, end, &room, &ss->room_len) < 0 ||
	    get_blob(&p, end, &ss->attachment, &ss->attachment_len) < 0 ||
	    get_blob(&p, end, &ss->tags, &ss->tags_len) < 0)
		return -EBADMSG;
	if (end - p != 8 + 8 + 32)
		return -EBADMSG;
	ss->room = (const char *)room;
	ss->last_id = rr_get_be64(p);
	ss->expiry_ms = rr_get_be64(p + 8);
	memcpy(ss->resume_hash, p + 16, sizeof(ss->resume_hash));
	return 0;
}

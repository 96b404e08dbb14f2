/*
 * Key and value encodings of the store's column families. Pure functions (no
 * I/O, no RocksDB), so the byte layout that sits on disk for years is unit
 * tested on its own.
 *
 * DESIGN: every per-room key starts with the room prefix, one length byte
 * (1..255) followed by the name. RocksDB compares keys bytewise, so
 *  - all keys of one room are contiguous (no other room's prefix can be a
 *    prefix of it: a different length byte or different name bytes differ
 *    before the room part ends), so "ab" and "abc" never interleave;
 *  - message ids are appended as big-endian u64, which sorts numerically;
 *  - a key whose first byte is 0 cannot be a room key: the store's own
 *    bookkeeping in the rooms CF lives there.
 *
 *   messages  [len][room][be64 id]            → [be64 ts_ms][message bytes]
 *   rooms     [len][room]['E']                → [1][16 epoch chars][be64 created_ms]
 *             [len][room]['L']                → [be64 last id]
 *             [0]["state"]                    → store state (clean/dirty + mode)
 *   sessions  [session id]                    → rr_keys_session_encode()
 *   kv        [len][room][key]                → value (opaque)
 *   alarms    [len][room][be64 due_ms][be64 seq] → payload (opaque)
 */
#ifndef RR_PERSIST_KEYS_H
#define RR_PERSIST_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "persist/store.h"
#include "core/bytes.h"

/* Longest key any encoder below produces: room prefix + kv key. */
#define RR_KEYS_MAX (1 + RR_STORE_ROOM_MAX + RR_STORE_KEY_MAX)

#define RR_KEYS_ROOM_EPOCH 'E'
#define RR_KEYS_ROOM_LAST 'L'

#define RR_KEYS_MSG_HDR 8 /* be64 ts_ms before the message bytes */
#define RR_KEYS_EPOCH_REC (1 + RR_STORE_EPOCH_LEN + 8)

/* Each encoder writes into buf (capacity cap) and returns the key length, or
 * -EINVAL (room length 0 or > 255, key too long) or -ENOBUFS (cap too small). */

/* [len][room]: the prefix of every per-room key. */
int rr_keys_room(uint8_t *buf, size_t cap, const char *room, size_t room_len);
/* messages CF: [len][room][be64 id]. */
int rr_keys_msg(uint8_t *buf, size_t cap, const char *room, size_t room_len, uint64_t id);
/* rooms CF: [len][room][tag] with tag RR_KEYS_ROOM_EPOCH or RR_KEYS_ROOM_LAST. */
int rr_keys_room_rec(uint8_t *buf, size_t cap, const char *room, size_t room_len, char tag);
/* kv CF: [len][room][key] (key may be empty: the LIST prefix of a room). */
int rr_keys_kv(uint8_t *buf, size_t cap, const char *room, size_t room_len, const void *key,
	       size_t key_len);
/* alarms CF: [len][room][be64 due_ms][be64 seq]. */
int rr_keys_alarm(uint8_t *buf, size_t cap, const char *room, size_t room_len, uint64_t due_ms,
		  uint64_t seq);

/*
 * The smallest key greater than every key that starts with prefix: the
 * prefix with its last non-0xff byte incremented and the rest dropped.
 * Returns its length, or 0 when no such key exists (prefix all 0xff: no upper
 * bound needed), -ENOBUFS if cap < plen.
 */
int rr_keys_prefix_end(uint8_t *buf, size_t cap, const uint8_t *prefix, size_t plen);

/*
 * Split a messages-CF key. Returns 0 and sets *room_len and *id, or -EBADMSG
 * if key is not [len][room][be64].
 */
int rr_keys_msg_decode(const uint8_t *key, size_t klen, size_t *room_len, uint64_t *id);

/* Decode the room name of a rooms-CF record key ([len][room][tag]);
 * returns 0 and sets *room, *room_len, *tag, or -EBADMSG (also for the
 * store's 0-prefixed bookkeeping keys). */
int rr_keys_room_rec_decode(const uint8_t *key, size_t klen, const char **room, size_t *room_len,
			    char *tag);

/* rooms CF 'E' value: [1][epoch][be64 created_ms]. Encode needs
 * RR_KEYS_EPOCH_REC bytes; decode returns 0 or -EBADMSG and NUL-terminates
 * epoch (RR_STORE_EPOCH_LEN + 1 bytes). */
void rr_keys_epoch_encode(uint8_t *buf, const char *epoch, uint64_t created_ms);
int rr_keys_epoch_decode(const uint8_t *val, size_t len, char *epoch, uint64_t *created_ms);

/* sessions CF value: the bytes rr_keys_session_encode() writes. _size is the
 * exact length; encode writes that many bytes into buf (cap checked:
 * -ENOBUFS); decode points the session's fields into val (no copy) and
 * returns 0 or -EBADMSG on a malformed or truncated record. */
size_t rr_keys_session_size(const struct rr_store_session *ss);
int rr_keys_session_encode(uint8_t *buf, size_t cap, const struct rr_store_session *ss);
int rr_keys_session_decode(const uint8_t *val, size_t len, struct rr_store_session *ss);

#endif

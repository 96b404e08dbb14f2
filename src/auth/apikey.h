/*
 * API keys for the backend API (--api-key-file): a set loaded from a file,
 * checked in constant time, reloaded on SIGHUP.
 *
 * The file holds one key per line. Lines are trimmed of spaces, tabs and a
 * CR (so CRLF files work); empty lines and lines starting with '#' are
 * ignored. A key is RR_APIKEY_BYTES_MIN..RR_APIKEY_BYTES_MAX visible ASCII
 * characters (0x21..0x7e) without spaces: what fits in
 * "Authorization: Bearer <key>". A file with no key, a bad line, more than
 * RR_APIKEY_COUNT_MAX keys or more than RR_APIKEY_FILE_BYTES_MAX bytes is
 * refused as a whole, with a message naming the line (never its content).
 *
 * Keys are bearer credentials: only their SHA-256 digests are kept in
 * memory, and nothing here logs a key or a part of one. A key presented by
 * a client is hashed and compared with every digest of the set without an
 * early exit, so the time taken says nothing about which bytes matched.
 *
 * Loading reads a file with blocking calls: call rr_apikey_load(),
 * rr_apikey_store_init() and rr_apikey_reload() at start-up or from the
 * thread that handles SIGHUP, never on a core.
 */
#ifndef RR_AUTH_APIKEY_H
#define RR_AUTH_APIKEY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* A short key is guessable: 16 characters of base64 are 96 bits. */
#define RR_APIKEY_BYTES_MIN 16
/* Long enough for any generated secret, short enough to bound a header. */
#define RR_APIKEY_BYTES_MAX 512
/* Keys in one file: a linear scan of digests per request stays cheap. */
#define RR_APIKEY_COUNT_MAX 4096
/* Bytes read from the key file; a bigger file is refused, not truncated. */
#define RR_APIKEY_FILE_BYTES_MAX (1u << 20)

/* An immutable set of keys. */
struct rr_apikeys;

/*
 * Load the key file at path into a new set (*out, owned by the caller, freed
 * with rr_apikey_free). Returns 0; -errno when the file can't be opened or
 * read (-ENOENT, -EACCES, ...); -EINVAL for a bad line or no key, -EFBIG for a
 * file over RR_APIKEY_FILE_BYTES_MAX, -E2BIG for more than
 * RR_APIKEY_COUNT_MAX keys. On failure *out is untouched and, when errlen > 0,
 * err holds a message ("line 3: key shorter than 16 characters").
 */
int rr_apikey_load(const char *path, struct rr_apikeys **out, char *err, size_t errlen);

/* Same, from a buffer holding the file's bytes (for tests and fuzzing). */
int rr_apikey_parse(const char *text, size_t len, struct rr_apikeys **out, char *err,
		    size_t errlen);

void rr_apikey_free(struct rr_apikeys *set);

/* Keys in the set (duplicates counted once). */
unsigned rr_apikey_count(const struct rr_apikeys *set);

/* Is key[0..n) one of the set's keys? Constant time in the key's content. */
bool rr_apikey_check(const struct rr_apikeys *set, const char *key, size_t n);

/*
 * The current set, shared by every core and swapped by a reload. Cores call
 * rr_apikey_store_check() concurrently; init, reload and fini run on one
 * thread (start-up, then the SIGHUP handler's thread).
 *
 * DESIGN: a reload publishes the new set with one atomic store; a core that
 * is comparing against the old set at that moment may go on using it, so old
 * sets are kept (retired) until rr_apikey_store_fini(). A set is a few dozen
 * bytes per key, and reloads are made by an operator, so this costs far less
 * than making every check take a reference.
 */
struct rr_apikey_store {
	_Atomic(struct rr_apikeys *) _cur;
	struct rr_apikeys *_retired; /* singly linked through the sets */
};

/* Load path as the first set. Returns what rr_apikey_load() returns; on
 * failure the store is empty (every check false) and needs no fini. */
int rr_apikey_store_init(struct rr_apikey_store *st, const char *path, char *err, size_t errlen);

/*
 * Reload path (SIGHUP). Returns 0 when the new set is in use; on any failure
 * the old set stays in use, the error is returned as by rr_apikey_load()
 * and err says why (log it: "keeping the previous N keys").
 */
int rr_apikey_reload(struct rr_apikey_store *st, const char *path, char *err, size_t errlen);

/* Is key[0..n) in the current set? Safe on any core, concurrently with a
 * reload. False when the store is empty. */
bool rr_apikey_store_check(struct rr_apikey_store *st, const char *key, size_t n);

/* Keys in the current set (0 when empty). */
unsigned rr_apikey_store_count(struct rr_apikey_store *st);

/* Free the current and every retired set; no core may check any more. */
void rr_apikey_store_fini(struct rr_apikey_store *st);

#endif

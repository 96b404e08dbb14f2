/*
 * What every part of the store uses: its log line, RocksDB's error strings
 * as errnos, the durability names, new epochs, and releasing a request's
 * results. The lowest file of src/persist/ (store_int.h lists the order).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "core/time.h"
#include "persist/store_int.h"

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

void rr_store_random_epoch(char epoch[RR_STORE_EPOCH_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t r[RR_STORE_EPOCH_LEN / 2];

	/* getrandom of 8 bytes never returns short once the pool is ready;
	 * fall back to time-derived bits rather than fail a room load */
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		uint64_t t = rr_now_ms() ^ (rr_wall_ms() << 20) ^ (uint64_t)(uintptr_t)epoch;

		rr_put_be64(r, t * 0x9e3779b97f4a7c15ull);
	}
	for (size_t i = 0; i < sizeof(r); i++) {
		epoch[2 * i] = hex[r[i] >> 4];
		epoch[2 * i + 1] = hex[r[i] & 15];
	}
	epoch[RR_STORE_EPOCH_LEN] = '\0';
}

void rr_store_req_release(struct rr_store_req *req)
{
	free(req->out._buf);
	memset(&req->out, 0, sizeof(req->out));
}

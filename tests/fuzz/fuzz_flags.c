/*
 * libFuzzer target for the command-line parser (src/core/flags.c).
 *
 * The input is split at NUL bytes into arguments (argv[0] is "ringroom"),
 * each copied into its own allocation of exactly its size so ASan catches a
 * read past a terminator. The first byte picks the error-buffer size, from 0
 * up, to exercise truncation of the message. On success every value must be
 * inside its documented bounds; on failure the message must be terminated
 * within the buffer. The duration and size helpers are fed each argument too.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/flags.h"
#include "core/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

#define ARGS_MAX 64 /* a command line longer than this adds nothing new */
#define ERR_MAX 160

static void check_config(const struct rr_config *c)
{
	REQUIRE(memchr(c->bind, '\0', sizeof(c->bind)) != NULL);
	REQUIRE(c->port >= 1 && c->port <= 65535);
	REQUIRE(c->cores >= 1 && c->cores <= RR_CORES_CEIL);
	REQUIRE(c->max_connections >= 1 && c->max_connections <= RR_MAX_CONNECTIONS_CEIL);
	REQUIRE(c->max_connections_per_ip <= RR_MAX_CONNECTIONS_CEIL);
	REQUIRE(c->max_room_size >= 1 && c->max_room_size <= RR_MAX_ROOM_SIZE_CEIL);
	REQUIRE(c->max_queued_bytes >= 4096 && c->max_queued_bytes <= RR_MAX_QUEUED_BYTES_CEIL);
	REQUIRE(c->max_message_bytes >= 125 && c->max_message_bytes <= RR_MAX_MESSAGE_BYTES_CEIL);
	REQUIRE(c->max_header_bytes >= 256 && c->max_header_bytes <= RR_MAX_HEADER_BYTES_CEIL);
	REQUIRE(c->max_headers >= 4 && c->max_headers <= RR_MAX_HEADERS_CEIL);
	REQUIRE(c->handshake_timeout_ms >= 10 && c->handshake_timeout_ms <= RR_TIMEOUT_MS_CEIL);
	REQUIRE(c->ping_interval_ms >= 10 && c->ping_interval_ms <= RR_TIMEOUT_MS_CEIL);
	REQUIRE(c->idle_timeout_ms >= 10 && c->idle_timeout_ms <= RR_TIMEOUT_MS_CEIL);
	REQUIRE(c->close_timeout_ms >= 10 && c->close_timeout_ms <= RR_TIMEOUT_MS_CEIL);
	REQUIRE(c->drain_timeout_ms >= 10 && c->drain_timeout_ms <= RR_TIMEOUT_MS_CEIL);
	REQUIRE(c->recv_buffers >= 16 && c->recv_buffers <= RR_RECV_BUFFERS_CEIL);
	REQUIRE(c->recv_buffer_size >= 1024 && c->recv_buffer_size <= RR_RECV_BUFFER_SIZE_CEIL);
	REQUIRE(c->log_level >= 0 && c->log_level <= 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[ARGS_MAX + 2];
	char err[ERR_MAX + 1];
	struct rr_config cfg;
	size_t err_len, i = 0;
	int argc = 1, rc;

	if (size == 0)
		return 0;
	err_len = data[0] % (ERR_MAX + 1);
	data++;
	size--;

	argv[0] = strdup("ringroom");
	REQUIRE(argv[0] != NULL);
	/* each NUL-terminated piece (the last one may lack its NUL) is one argument */
	while (i < size && argc <= ARGS_MAX) {
		const uint8_t *nul = memchr(data + i, '\0', size - i);
		size_t n = nul ? (size_t)(nul - (data + i)) : size - i;
		char *arg = malloc(n + 1);

		REQUIRE(arg != NULL);
		memcpy(arg, data + i, n);
		arg[n] = '\0';
		argv[argc++] = arg;
		i += n + 1;
	}
	argv[argc] = NULL;

	memset(err, 0x5a, sizeof(err));
	rc = rr_flags_parse(&cfg, argc, argv, err_len ? err : NULL, err_len);
	REQUIRE(rc == 0 || rc == -EINVAL);
	if (rc == 0)
		check_config(&cfg);
	else if (err_len > 0)
		REQUIRE(memchr(err, '\0', err_len) != NULL);
	/* nothing written past err_len */
	for (i = err_len; i < sizeof(err); i++)
		REQUIRE(err[i] == 0x5a);

	for (int k = 1; k < argc; k++) {
		uint64_t v;

		rc = rr_parse_duration_ms(argv[k], &v);
		REQUIRE(rc == 0 || rc == -EINVAL);
		rc = rr_parse_size(argv[k], &v);
		REQUIRE(rc == 0 || rc == -EINVAL);
	}
	for (int k = 0; k < argc; k++)
		free(argv[k]);
	return 0;
}

/* Flag parsing: defaults, both syntaxes, units, and errors that name the flag. */
#include "core/flags.h"
#include <errno.h>
#include "check.h"

#include <string.h>

static int parse(struct rr_config *cfg, char *err, const char *a, const char *b, const char *c)
{
	char *argv[4] = {"ringroom", (char *)a, (char *)b, (char *)c};
	int argc = 1 + (a != NULL) + (b != NULL) + (c != NULL);
	return rr_flags_parse(cfg, argc, argv, err, 256);
}

int main(void)
{
	struct rr_config cfg;
	char err[256];
	uint64_t v;

	CHECK_EQ(parse(&cfg, err, NULL, NULL, NULL), 0);
	CHECK_EQ(cfg.port, 8080);
	CHECK_EQ(cfg.max_queued_bytes, 4u << 20);
	CHECK_EQ(cfg.max_message_bytes, 1u << 20);
	CHECK_EQ(cfg.handshake_timeout_ms, 10000);
	CHECK_EQ(cfg.ping_interval_ms, 25000);
	CHECK_EQ(cfg.idle_timeout_ms, 60000);
	CHECK_EQ(cfg.drain_timeout_ms, 10000);
	CHECK_EQ(cfg.max_header_bytes, 8192);
	CHECK_EQ(cfg.max_headers, 100);
	CHECK(cfg.cores >= 1);
	CHECK(strcmp(cfg.bind, "0.0.0.0") == 0);

	CHECK_EQ(parse(&cfg, err, "--port", "9000", "--handshake-timeout=500ms"), 0);
	CHECK_EQ(cfg.port, 9000);
	CHECK_EQ(cfg.handshake_timeout_ms, 500);
	CHECK_EQ(parse(&cfg, err, "--max-queued-bytes=64KiB", "--no-cork", NULL), 0);
	CHECK_EQ(cfg.max_queued_bytes, 65536);
	CHECK(cfg.no_cork);

	CHECK_EQ(parse(&cfg, err, "--port", "0", NULL), -EINVAL);
	CHECK(strstr(err, "--port") != NULL);
	CHECK_EQ(parse(&cfg, err, "--port", "70000", NULL), -EINVAL);
	CHECK(strstr(err, "--port") != NULL);
	CHECK_EQ(parse(&cfg, err, "--idle-timeout", "soon", NULL), -EINVAL);
	CHECK(strstr(err, "--idle-timeout") != NULL);
	CHECK_EQ(parse(&cfg, err, "--bogus", NULL, NULL), -EINVAL);
	CHECK(strstr(err, "--bogus") != NULL);
	CHECK_EQ(parse(&cfg, err, "--port", NULL, NULL), -EINVAL);
	CHECK(strstr(err, "missing value") != NULL);
	CHECK_EQ(parse(&cfg, err, "port", NULL, NULL), -EINVAL);
	CHECK_EQ(parse(&cfg, err, "--log-level", "loud", NULL), -EINVAL);
	CHECK_EQ(parse(&cfg, err, "--log-level", "debug", NULL), 0);
	CHECK_EQ(cfg.log_level, 3);

	/* cluster mode: off by default; --node-name alone is a mistake */
	CHECK_EQ(parse(&cfg, err, NULL, NULL, NULL), 0);
	CHECK_EQ(cfg.cluster[0], '\0');
	CHECK_EQ(cfg.node_name[0], '\0');
	CHECK_EQ(parse(&cfg, err, "--cluster=nats://127.0.0.1:4222,nats://127.0.0.2:4222",
		       "--node-name", "a:8080"),
		 0);
	CHECK(strcmp(cfg.cluster, "nats://127.0.0.1:4222,nats://127.0.0.2:4222") == 0);
	CHECK(strcmp(cfg.node_name, "a:8080") == 0);
	CHECK_EQ(parse(&cfg, err, "--node-name", "a", NULL), -EINVAL);
	CHECK(strstr(err, "--node-name needs --cluster") != NULL);

	CHECK_EQ(rr_parse_duration_ms("2s", &v), 0);
	CHECK_EQ(v, 2000);
	CHECK_EQ(rr_parse_duration_ms("3", &v), 0);
	CHECK_EQ(v, 3000);
	CHECK_EQ(rr_parse_duration_ms("1h", &v), 0);
	CHECK_EQ(v, 3600000);
	CHECK_EQ(rr_parse_duration_ms("-1s", &v), -EINVAL);
	CHECK_EQ(rr_parse_duration_ms("", &v), -EINVAL);
	CHECK_EQ(rr_parse_duration_ms("99999999999999999999s", &v), -EINVAL);
	CHECK_EQ(rr_parse_size("1MiB", &v), 0);
	CHECK_EQ(v, 1u << 20);
	CHECK_EQ(rr_parse_size("10x", &v), -EINVAL);
	return check_done();
}

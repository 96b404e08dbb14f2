/* Command-line flags: see flags.h. */
#include "core/flags.h"
#include "core/limits.h"
#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum flag_kind { F_U32, F_SIZE, F_DUR, F_STR, F_BOOL, F_LEVEL, F_LIST };

struct flag {
	const char *name;
	enum flag_kind kind;
	size_t off;
	const char *def; /* default, as text (what --help shows); NULL: computed */
	uint64_t min, max;
	const char *help;
};

#define OFF(f) offsetof(struct rr_config, f)

static const struct flag flags[] = {
	{"port", F_U32, OFF(port), "8080", 1, 65535, "TCP port of the plain listener"},
	{"bind", F_STR, OFF(bind), "0.0.0.0", 0, 63, "address to listen on (IPv4 or IPv6)"},
	{"tls-cert", F_STR, OFF(tls_cert), NULL, 0, 255,
	 "PEM certificate (chain) for wss://; with --tls-key enables the TLS port"},
	{"tls-key", F_STR, OFF(tls_key), NULL, 0, 255, "PEM private key of --tls-cert"},
	{"tls-port", F_U32, OFF(tls_port), "8443", 1, 65535, "TCP port of the TLS listener"},
	{"tls-only", F_BOOL, OFF(tls_only), "off", 0, 1, "serve only the TLS port (no plain port)"},
	{"cores", F_U32, OFF(cores), NULL, 1, RR_CORES_CEIL,
	 "reactor threads, one pinned per core"},
	{"max-connections", F_U32, OFF(max_connections), "65536", 1, RR_MAX_CONNECTIONS_CEIL,
	 "connections in all; past it 503 + Retry-After before the upgrade"},
	{"max-connections-per-ip", F_U32, OFF(max_connections_per_ip), "0", 0,
	 RR_MAX_CONNECTIONS_CEIL, "connections per client address (0: no limit); past it 429"},
	{"max-room-size", F_U32, OFF(max_room_size), "100000", 1, RR_MAX_ROOM_SIZE_CEIL,
	 "members per room; past it 503 + Retry-After before the upgrade"},
	{"spread-at", F_U32, OFF(spread_at), "1000", 0, RR_MAX_ROOM_SIZE_CEIL,
	 "a room this big spreads over every core: new members stay on their own core (0: never)"},
	{"max-queued-bytes", F_SIZE, OFF(max_queued_bytes), "4MiB", 4096, RR_MAX_QUEUED_BYTES_CEIL,
	 "output queued on one connection before it is closed with 1013"},
	{"max-message-bytes", F_SIZE, OFF(max_message_bytes), "1MiB", 125,
	 RR_MAX_MESSAGE_BYTES_CEIL, "largest message a client may send (1009 past it)"},
	{"max-header-bytes", F_SIZE, OFF(max_header_bytes), "8KiB", 256, RR_MAX_HEADER_BYTES_CEIL,
	 "request line + headers of an upgrade (431 past it)"},
	{"max-headers", F_U32, OFF(max_headers), "100", 4, RR_MAX_HEADERS_CEIL,
	 "header fields in an upgrade request (431 past it)"},
	{"handshake-timeout", F_DUR, OFF(handshake_timeout_ms), "10s", 10, RR_TIMEOUT_MS_CEIL,
	 "time for a client to send its whole upgrade request"},
	{"ping-interval", F_DUR, OFF(ping_interval_ms), "25s", 10, RR_TIMEOUT_MS_CEIL,
	 "server pings a connection this often"},
	{"idle-timeout", F_DUR, OFF(idle_timeout_ms), "60s", 10, RR_TIMEOUT_MS_CEIL,
	 "a client silent this long is closed with 4008"},
	{"close-timeout", F_DUR, OFF(close_timeout_ms), "5s", 10, RR_TIMEOUT_MS_CEIL,
	 "wait for the peer's close frame or FIN before dropping the socket"},
	{"drain-timeout", F_DUR, OFF(drain_timeout_ms), "10s", 10, RR_TIMEOUT_MS_CEIL,
	 "on SIGTERM/SIGINT, exit within this"},
	{"drain-grace", F_DUR, OFF(drain_grace_ms), "0", 0, RR_TIMEOUT_MS_CEIL,
	 "on SIGTERM, answer /healthz 503 this long before closing members (let the balancer see it)"},
	{"recv-buffers", F_U32, OFF(recv_buffers), "1024", 16, RR_RECV_BUFFERS_CEIL,
	 "most receive buffers per core (power of two; provided 64 at a time as needed)"},
	{"recv-buffer-size", F_SIZE, OFF(recv_buffer_size), "16KiB", 1024,
	 RR_RECV_BUFFER_SIZE_CEIL, "size of each receive buffer"},
	{"data-dir", F_STR, OFF(data_dir), "./data", 0, 255,
	 "RocksDB data folder (created if missing; one broker per folder)"},
	{"durability", F_STR, OFF(durability), "async", 0, 15,
	 "when a message is acknowledged: memory, async (WAL) or sync (fsync)"},
	{"history-size", F_U32, OFF(history_size), "1000", 1, 10000000,
	 "messages kept per room"},
	{"history-ttl", F_DUR, OFF(history_ttl_ms), "24h", 1000, 365ull * 24 * 3600 * 1000,
	 "messages older than this are dropped"},
	{"session-ttl", F_DUR, OFF(session_ttl_ms), "24h", 1000, 365ull * 24 * 3600 * 1000,
	 "a session can be resumed this long after it was last saved"},
	{"max-attachment-bytes", F_SIZE, OFF(max_attachment_bytes), "16KiB", 0, 1u << 20,
	 "largest per-connection attachment a handler may store"},
	{"room-idle-evict", F_DUR, OFF(room_idle_evict_ms), "60s", 0, RR_TIMEOUT_MS_CEIL,
	 "a handler room without members leaves memory after this (0: at once)"},
	{"allow-origin", F_STR, OFF(allow_origin), NULL, 0, 1023,
	 "comma-separated Origins allowed to upgrade (403 for others; requests without "
	 "Origin pass)"},
	{"auth-secret", F_STR, OFF(auth_secret), NULL, 0, 255,
	 "HS256 secret: /chat/ and --handler rooms then need a valid token (401)"},
	{"auth-secret-file", F_STR, OFF(auth_secret_file), NULL, 0, 255,
	 "read the HS256 secret from this file instead (keeps it out of ps)"},
	{"chat-rate", F_U32, OFF(chat_rate), "20", 1, 100000,
	 "chat messages per second per connection (burst: twice this)"},
	{"handler", F_LIST, OFF(handlers), NULL, 0, 319,
	 "mount a room handler from a shared object: /prefix/=./libroom.so (repeatable)"},
	{"proxy-protocol", F_BOOL, OFF(proxy_protocol), "off", 0, 1,
	 "expect a PROXY protocol v1/v2 header first on every connection (behind a balancer)"},
	{"proxy-from", F_STR, OFF(proxy_from), "127.0.0.0/8,::1/128", 0, 1023,
	 "networks a PROXY header is accepted from (others are closed unanswered)"},
	{"api-key-file", F_STR, OFF(api_key_file), NULL, 0, 255,
	 "backend API keys, one per line (reloaded on SIGHUP); turns /api/ on"},
	{"metrics-token", F_STR, OFF(metrics_token), NULL, 0, 255,
	 "/metrics then needs Authorization: Bearer <this> (401 otherwise)"},
	{"log-format", F_STR, OFF(log_format), "text", 0, 7, "text or json (one object per line)"},
	{"max-chat-bytes", F_SIZE, OFF(max_chat_bytes), "4KiB", 1, 1u << 20,
	 "bytes of UTF-8 in one chat message's content (too_large past it)"},
	{"allow-no-exp", F_BOOL, OFF(allow_no_exp), "off", 0, 1,
	 "accept tokens without an exp claim (by default they are refused)"},
	{"no-cork", F_BOOL, OFF(no_cork), "off", 0, 1,
	 "send each frame on its own instead of one send per connection per iteration"},
	{"cluster", F_STR, OFF(cluster), NULL, 0, 1023,
	 "NATS servers, nats://HOST:PORT[,nats://...]: turns cluster mode on (kernel-notes/cluster.md)"},
	{"node-name", F_STR, OFF(node_name), NULL, 0, 255,
	 "this node's name in the cluster (none: hostname:port)"},
	{"cluster-replicas", F_U32, OFF(cluster_replicas), "1", 1, 5,
	 "copies of each JetStream stream this node creates (3 on a 3-server NATS cluster)"},
	{"log-level", F_LEVEL, OFF(log_level), "info", 0, 3, "error, warn, info or debug"},
	{"help", F_BOOL, OFF(help), "off", 0, 1, "print this and exit"},
	{"version", F_BOOL, OFF(version), "off", 0, 1, "print the version and exit"},
};

#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

static int parse_u64(const char *s, uint64_t *out, const char **end)
{
	char *e;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno != 0)
		return -EINVAL;
	*out = v;
	*end = e;
	return 0;
}

struct unit {
	const char *name;
	uint64_t mul;
};

/* A number followed by one of the units (the unit "" is the bare number). */
static int parse_with_units(const char *s, const struct unit *units, size_t n, uint64_t *out)
{
	const char *end;
	uint64_t v;

	if (parse_u64(s, &v, &end) < 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(end, units[i].name) == 0) {
			if (v > UINT64_MAX / units[i].mul)
				return -EINVAL;
			*out = v * units[i].mul;
			return 0;
		}
	}
	return -EINVAL;
}

int rr_parse_duration_ms(const char *s, uint64_t *out)
{
	static const struct unit units[] = {
		{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"", 1000}};
	return parse_with_units(s, units, sizeof(units) / sizeof(units[0]), out);
}

int rr_parse_size(const char *s, uint64_t *out)
{
	static const struct unit units[] = {{"", 1},         {"B", 1},         {"K", 1024},
					    {"KiB", 1024},   {"M", 1u << 20},  {"MiB", 1u << 20},
					    {"G", 1u << 30}, {"GiB", 1u << 30}};
	return parse_with_units(s, units, sizeof(units) / sizeof(units[0]), out);
}

static int set_flag(struct rr_config *cfg, const struct flag *f, const char *val, char *err,
		    size_t err_len)
{
	char *base = (char *)cfg + f->off;
	uint64_t v = 0;
	const char *end;
	int rc = 0;

	switch (f->kind) {
	case F_U32:
		rc = parse_u64(val, &v, &end);
		if (rc == 0 && *end != '\0')
			rc = -EINVAL;
		break;
	case F_SIZE:
		rc = rr_parse_size(val, &v);
		break;
	case F_DUR:
		rc = rr_parse_duration_ms(val, &v);
		break;
	case F_LIST: {
		uint32_t *count = &cfg->nhandlers;
		if (*count >= 16) {
			snprintf(err, err_len, "--%s: at most 16", f->name);
			return -EINVAL;
		}
		if (strlen(val) == 0 || strlen(val) > f->max) {
			snprintf(err, err_len, "--%s: value must be 1..%" PRIu64 " characters", f->name,
				 f->max);
			return -EINVAL;
		}
		snprintf(cfg->handlers[(*count)++], f->max + 1, "%s", val);
		return 0;
	}
	case F_STR:
		if (strlen(val) == 0 || strlen(val) > f->max) {
			snprintf(err, err_len, "--%s: value must be 1..%" PRIu64 " characters", f->name,
				 f->max);
			return -EINVAL;
		}
		snprintf(base, f->max + 1, "%s", val);
		return 0;
	case F_BOOL:
		if (strcmp(val, "on") == 0 || strcmp(val, "true") == 0 || strcmp(val, "1") == 0)
			*(bool *)base = true;
		else if (strcmp(val, "off") == 0 || strcmp(val, "false") == 0 ||
			 strcmp(val, "0") == 0)
			*(bool *)base = false;
		else
			rc = -EINVAL;
		if (rc < 0)
			break;
		return 0;
	case F_LEVEL: {
		static const char *const names[] = {"error", "warn", "info", "debug"};
		for (int i = 0; i < 4; i++) {
			if (strcmp(val, names[i]) == 0) {
				*(int *)base = i;
				return 0;
			}
		}
		rc = -EINVAL;
		break;
	}
	}
	if (rc < 0) {
		snprintf(err, err_len, "--%s: invalid value '%.64s'", f->name, val);
		return -EINVAL;
	}
	if (v < f->min || v > f->max) {
		snprintf(err, err_len,
			 "--%s: value '%.64s' out of range [%" PRIu64 ", %" PRIu64 "]%s", f->name,
			 val, f->min, f->max,
			 f->kind == F_DUR ? " ms" : f->kind == F_SIZE ? " bytes" : "");
		return -EINVAL;
	}
	if (f->kind == F_U32)
		*(uint32_t *)base = (uint32_t)v;
	else
		*(uint64_t *)base = v;
	return 0;
}

static unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	if (n > RR_CORES_CEIL)
		return RR_CORES_CEIL;
	return (unsigned)n;
}

int rr_flags_parse(struct rr_config *cfg, int argc, char **argv, char *err, size_t err_len)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NFLAGS; i++) {
		if (flags[i].def == NULL)
			continue;
		int rc = set_flag(cfg, &flags[i], flags[i].def, err, err_len);
		if (rc < 0)
			return rc; /* a bad default is a programmer error, but don't abort a fuzzer */
	}
	cfg->cores = online_cpus();
	cfg->tls_cert[0] = cfg->tls_key[0] = cfg->allow_origin[0] = '\0';
	cfg->auth_secret[0] = cfg->auth_secret_file[0] = '\0';

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = NULL;
		size_t name_len;

		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			snprintf(err, err_len, "unexpected argument '%.64s' (flags start with --)",
				 arg);
			return -EINVAL;
		}
		arg += 2;
		const char *eq = strchr(arg, '=');
		name_len = eq ? (size_t)(eq - arg) : strlen(arg);
		if (eq)
			val = eq + 1;

		const struct flag *f = NULL;
		for (size_t k = 0; k < NFLAGS; k++) {
			if (strlen(flags[k].name) == name_len &&
			    memcmp(flags[k].name, arg, name_len) == 0) {
				f = &flags[k];
				break;
			}
		}
		if (f == NULL) {
			snprintf(err, err_len, "unknown flag '--%.*s' (see --help)",
				 (int)(name_len > 64 ? 64 : name_len), arg);
			return -EINVAL;
		}
		if (val == NULL) {
			if (f->kind == F_BOOL) {
				val = "on";
			} else if (i + 1 < argc) {
				val = argv[++i];
			} else {
				snprintf(err, err_len, "--%s: missing value", f->name);
				return -EINVAL;
			}
		}
		int rc = set_flag(cfg, f, val, err, err_len);
		if (rc < 0)
			return rc;
	}
	if (strcmp(cfg->durability, "memory") != 0 && strcmp(cfg->durability, "async") != 0 &&
	    strcmp(cfg->durability, "sync") != 0) {
		snprintf(err, err_len, "--durability: '%s' is not memory, async or sync",
			 cfg->durability);
		return -EINVAL;
	}
	if (strcmp(cfg->log_format, "text") != 0 && strcmp(cfg->log_format, "json") != 0) {
		snprintf(err, err_len, "--log-format: '%s' is not text or json", cfg->log_format);
		return -EINVAL;
	}
	if (cfg->node_name[0] && cfg->cluster[0] == '\0') {
		snprintf(err, err_len, "--node-name needs --cluster");
		return -EINVAL;
	}
	if (cfg->cluster_replicas != 1 && cfg->cluster[0] == '\0') {
		snprintf(err, err_len, "--cluster-replicas needs --cluster");
		return -EINVAL;
	}
	if (cfg->auth_secret[0] && cfg->auth_secret_file[0]) {
		snprintf(err, err_len, "--auth-secret and --auth-secret-file: give one");
		return -EINVAL;
	}
	if ((cfg->tls_cert[0] != '\0') != (cfg->tls_key[0] != '\0')) {
		snprintf(err, err_len, "--tls-cert and --tls-key go together");
		return -EINVAL;
	}
	if (cfg->tls_only && cfg->tls_cert[0] == '\0') {
		snprintf(err, err_len, "--tls-only needs --tls-cert and --tls-key");
		return -EINVAL;
	}
	if (cfg->tls_cert[0] && cfg->tls_port == cfg->port && !cfg->tls_only) {
		snprintf(err, err_len, "--tls-port: same as --port (%u)", cfg->port);
		return -EINVAL;
	}
	return 0;
}

void rr_flags_usage(FILE *out)
{
	fprintf(out, "usage: ringroom [--flag value | --flag=value] ...\n\n");
	fprintf(out, "Durations take ms, s, m or h (bare numbers are seconds); sizes take\n"
		     "K/KiB, M/MiB, G/GiB (bare numbers are bytes).\n\n");
	for (size_t i = 0; i < NFLAGS; i++) {
		char left[64];
		const char *def = flags[i].def         ? flags[i].def
				  : flags[i].kind == F_STR || flags[i].kind == F_LIST ? "none"
							   : "online CPUs";
		snprintf(left, sizeof(left), "--%s", flags[i].name);
		fprintf(out, "  %-26s %s (default: %s)\n", left, flags[i].help, def);
	}
}

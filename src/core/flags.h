/*
 * The broker's configuration and its command-line parser.
 *
 * DESIGN: one table describes every flag (name, kind, default, bounds, help),
 * so --help, parsing and validation can't drift apart. The parser is pure:
 * it writes a struct rr_config and an error message, never exits, never
 * prints, so it can be unit tested and fuzzed.
 */
#ifndef RR_CORE_FLAGS_H
#define RR_CORE_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct rr_config {
	char bind[64];
	uint32_t port;
	char tls_cert[256];
	char tls_key[256];
	uint32_t tls_port;
	bool tls_only;
	uint32_t cores;
	uint32_t max_connections;
	uint32_t max_connections_per_ip;
	uint32_t max_room_size;
	uint32_t spread_at; /* --spread-at: members at which a room spreads (0: never) */
	uint64_t max_queued_bytes;
	uint64_t max_message_bytes;
	uint64_t max_header_bytes;
	uint32_t max_headers;
	uint64_t handshake_timeout_ms;
	uint64_t ping_interval_ms;
	uint64_t idle_timeout_ms;
	uint64_t close_timeout_ms;
	uint64_t drain_timeout_ms;
	uint32_t recv_buffers;
	uint64_t recv_buffer_size;
	bool no_cork;
	char data_dir[256];
	char durability[16];
	uint32_t history_size;
	uint64_t history_ttl_ms;
	uint64_t session_ttl_ms;
	uint64_t max_attachment_bytes;
	uint64_t room_idle_evict_ms;
	uint32_t chat_rate;
	char auth_secret[256];
	char auth_secret_file[256];
	char allow_origin[1024]; /* comma-separated; empty: any */
	char handlers[16][320]; /* --handler, repeatable */
	bool proxy_protocol;
	char proxy_from[1024];   /* CIDRs, comma-separated */
	char api_key_file[256];
	char metrics_token[256];
	char log_format[8];      /* text or json */
	uint64_t max_chat_bytes;
	bool allow_no_exp;
	uint64_t drain_grace_ms;
	char cluster[1024];  /* --cluster: nats:// URLs, comma-separated; empty: off */
	char node_name[256]; /* --node-name; empty: hostname:port */
	uint32_t cluster_replicas; /* --cluster-replicas: streams this node creates */
	uint32_t nhandlers;
	int log_level;
	bool help;
	bool version;
};

/*
 * Fill cfg with the defaults, then apply argv[1..argc). Accepts "--name value"
 * and "--name=value". Returns 0, or -EINVAL with err holding a one-line
 * message that names the flag (the caller prints it and exits 2).
 */
int rr_flags_parse(struct rr_config *cfg, int argc, char **argv, char *err, size_t err_len);

/* Print every flag with its default. */
void rr_flags_usage(FILE *out);

/* Parse "10s", "500ms", "2m", "1h", bare seconds. Returns 0 or -EINVAL. */
int rr_parse_duration_ms(const char *s, uint64_t *out);
/* Parse "4MiB", "16KiB", "1G", bare bytes. Returns 0 or -EINVAL. */
int rr_parse_size(const char *s, uint64_t *out);

#endif

/*
 * ringroom: boot order only. Flags → kernel probe → cores (rings, pools,
 * listeners) → signals → wait for SIGTERM/SIGINT → drain → exit.
 */
#include "core/flags.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/time.h"
#include "net/iplimit.h"
#include "persist/store.h"
#include "chat/chat.h"
#include "gate/gate.h"
#include "http/http.h"
#include "room/room.h"
#include "reactor/file.h"
#include "rt/rt.h"
#include "tls/tls.h"
#include "reactor/loop.h"
#if RR_HAVE_CLUSTER
#include "cluster/cluster.h"
#endif

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RINGROOM_VERSION "0.1.0"

static struct rr_broker broker;
static struct rr_store *store;
#if RR_HAVE_CLUSTER
static struct rr_cluster *cluster;
#endif

/* --cluster: start the cluster thread (it connects in the background).
 * 0, or the exit status. Nothing uses the cluster yet but /metrics and the
 * log (issue 15 builds the rooms on it). */
static int start_cluster(const struct rr_config *cfg)
{
	if (cfg->cluster[0] == '\0')
		return 0;
#if RR_HAVE_CLUSTER
	char node[320], err[256];

	if (cfg->node_name[0]) {
		snprintf(node, sizeof(node), "%s", cfg->node_name);
	} else {
		char host[256] = "localhost";

		gethostname(host, sizeof(host) - 1);
		snprintf(node, sizeof(node), "%s:%u", host, cfg->port);
	}
	struct rr_cluster_opts co = {
		.servers = cfg->cluster,
		.node_name = node,
		.cores = cfg->cores,
		.stream = "RINGROOM_CHAT",
		.stream_subjects = "ringroom.chat.>",
		/* a room's history, as the local log keeps it */
		.stream_max_per_subject = (int64_t)cfg->history_size,
		.stream_max_age_ms = cfg->history_ttl_ms,
		/* sessions that resume on any node: the newest record of each */
		.kv_stream = "RINGROOM_SESSIONS",
		.kv_subject = "ringroom.session.>",
		.kv_max_age_ms = cfg->session_ttl_ms,
		.stream_replicas = cfg->cluster_replicas,
	};
	if (rr_cluster_open(&cluster, &co, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringroom: %s\n", err);
		return 2;
	}
	rr_gate_cfg.cluster = cluster;
	rr_handler_cfg.cluster = cluster;
	rr_info("cluster: node %s, NATS %s", node, cfg->cluster);
	return 0;
#else
	fprintf(stderr, "ringroom: --cluster: this build has no cluster mode (build with "
			"libnats-dev installed, meson -Dcluster=enabled)\n");
	return 2;
#endif
}

/* Before the store and the cores' rings go: the cluster posts to them. */
static void stop_cluster(void)
{
#if RR_HAVE_CLUSTER
	rr_gate_cfg.cluster = NULL;
	rr_handler_cfg.cluster = NULL;
	rr_cluster_close(cluster);
	cluster = NULL;
#endif
}

static int load_auth_secret(const struct rr_config *cfg)
{
	if (cfg->auth_secret[0]) {
		size_t n = strlen(cfg->auth_secret);
		memcpy(rr_gate_cfg.auth_secret, cfg->auth_secret, n);
		rr_gate_cfg.auth_secret_len = n;
	} else if (cfg->auth_secret_file[0]) {
		char *buf = NULL;
		size_t n = 0;
		int rc = rr_file_read(cfg->auth_secret_file, sizeof(rr_gate_cfg.auth_secret), &buf,
				      &n);
		if (rc < 0) {
			fprintf(stderr, "ringroom: --auth-secret-file %s: %s\n", cfg->auth_secret_file,
				strerror(-rc));
			return -EINVAL;
		}
		while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
		if (n == 0) {
			fprintf(stderr, "ringroom: --auth-secret-file %s: empty\n",
				cfg->auth_secret_file);
			free(buf);
			return -EINVAL;
		}
		memcpy(rr_gate_cfg.auth_secret, buf, n);
		rr_gate_cfg.auth_secret_len = n;
		explicit_bzero(buf, n);
		free(buf);
	}
	return 0;
}

int main(int argc, char **argv)
{
	char err[256];
	sigset_t set;
	int sig = 0;

	if (rr_flags_parse(&broker.cfg, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringroom: %s\n", err);
		return 2;
	}
	if (broker.cfg.help) {
		rr_flags_usage(stdout);
		return 0;
	}
	if (broker.cfg.version) {
		printf("ringroom %s\n%s\n", RINGROOM_VERSION, rr_tls_build_info());
		return 0;
	}
	rr_log_level = broker.cfg.log_level;
	rr_log_set_format(strcmp(broker.cfg.log_format, "json") == 0 ? RR_LOG_JSON : RR_LOG_TEXT);

	/* Signals go to this thread only: block them before any core starts. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (rr_iplimit_init(broker.cfg.max_connections_per_ip) < 0)
		return 1;
	if (load_auth_secret(&broker.cfg) < 0)
		return 2;
	for (uint32_t i = 0; i < broker.cfg.nhandlers; i++)
		if (rr_handler_load_so(broker.cfg.handlers[i]) < 0)
			return 2;

	/* Storage first: rooms load from it as soon as cores take members. */
	struct rr_store_opts so = {
		.dir = broker.cfg.data_dir,
		.history_size = broker.cfg.history_size,
		.history_ttl_ms = broker.cfg.history_ttl_ms,
		.cores = broker.cfg.cores,
	};
	rr_store_durability_parse(broker.cfg.durability, &so.durability);
	if (rr_store_open(&store, &so, err, sizeof(err)) < 0) {
		rr_err("storage: %s", err);
		return 1;
	}
	rr_info("storage: %s, durability %s", broker.cfg.data_dir, broker.cfg.durability);
	rr_handler_cfg.store = store;
	rr_handler_cfg.session_ttl_ms = broker.cfg.session_ttl_ms;
	rr_handler_cfg.max_attachment_bytes = (uint32_t)broker.cfg.max_attachment_bytes;
	rr_handler_cfg.room_idle_evict_ms = broker.cfg.room_idle_evict_ms;
	struct rr_chat_config chat = {
		.rate_per_s = broker.cfg.chat_rate,
		.rate_burst = broker.cfg.chat_rate * 2,
		.max_content_bytes = (uint32_t)broker.cfg.max_chat_bytes,
		.heartbeat_ms = (uint32_t)broker.cfg.ping_interval_ms,
		.initial_messages = RR_CHAT_INITIAL_DEFAULT,
	};
	rr_chat_configure(&chat);
	rr_gate_cfg.store = store;
	int rc = start_cluster(&broker.cfg);
	if (rc != 0) {
		rr_store_close(store);
		return rc;
	}
	if (broker.cfg.api_key_file[0] && rr_gate_api_keys(broker.cfg.api_key_file) < 0) {
		stop_cluster();
		rr_store_close(store);
		return 2;
	}

	/* The layers, lowest first: connections and their gate, rooms (with
	 * /echo and /raw/), the handler runtime with /chat/ and --handler. */
	rr_gate_register();
	rr_room_register();
	rr_rt_add(RR_ROUTE_CHAT, rr_chat_handler());
	rr_rt_register();
	if (broker.cfg.tls_cert[0])
		rr_info("%s", rr_tls_build_info()); /* the TLS build and its cipher order */
	if (rr_broker_init(&broker) < 0) {
		stop_cluster();
		rr_store_close(store);
		return 1;
	}
	if (rr_broker_start(&broker) < 0) {
		stop_cluster();
		rr_broker_free(&broker);
		rr_store_close(store);
		return 1;
	}

	rr_notify_ready(); /* systemd Type=notify: accepting now */

	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			rr_notify_reloading();
			if (broker.cfg.tls_cert[0]) {
				rr_info("SIGHUP: reloading the TLS certificate and key");
				rr_broker_tls_load(&broker);
			}
			rr_gate_reload();
			rr_notify_ready();
			continue;
		}
		break;
	}
	rr_notify_stopping();
	rr_info("%s: draining (at most %llu ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
		(unsigned long long)broker.cfg.drain_timeout_ms);
	if (broker.cfg.drain_grace_ms)
		rr_info("--drain-grace: /healthz answers 503 for %llu ms before members are closed",
			(unsigned long long)broker.cfg.drain_grace_ms);
	rr_broker_drain(&broker);
	uint64_t start = rr_now_ms(), limit = broker.cfg.drain_timeout_ms;
	/* the balancer sees /healthz 503 and stops sending clients first */
	while (rr_now_ms() - start < broker.cfg.drain_grace_ms && rr_now_ms() - start < limit) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	rr_broker_close_members(&broker);
	while (!rr_broker_drained(&broker) && rr_now_ms() - start < limit) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	rr_broker_stop(&broker);
	uint64_t spent = rr_now_ms() - start;
	if (!rr_broker_join(&broker, spent < limit ? limit - spent : 1)) {
		rr_warn("drain timeout passed with members still connected: exiting");
		fflush(NULL);
		_exit(0);
	}
	/* cores waited for their storage completions; flush and close */
	stop_cluster();
	rr_store_close(store);
	rr_broker_free(&broker);
	rr_iplimit_free();
	rr_gate_api_fini();
	rr_info("bye");
	return 0;
}

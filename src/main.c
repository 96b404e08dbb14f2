/*
 * ringroom: boot order only. Flags → kernel probe → cores (rings, pools,
 * listeners) → signals → wait for SIGTERM/SIGINT → drain → exit.
 */
#include "core/flags.h"
#include "core/log.h"
#include "net/iplimit.h"
#include "reactor/loop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RINGROOM_VERSION "0.1.0"

static struct rr_broker broker;

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
		printf("ringroom %s\n", RINGROOM_VERSION);
		return 0;
	}
	rr_log_level = broker.cfg.log_level;

	/* Signals go to this thread only: block them before any core starts. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (rr_iplimit_init(broker.cfg.max_connections_per_ip) < 0)
		return 1;
	if (rr_broker_init(&broker) < 0)
		return 1;
	if (rr_broker_start(&broker) < 0) {
		rr_broker_free(&broker);
		return 1;
	}

	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			if (broker.cfg.tls_cert[0]) {
				rr_info("SIGHUP: reloading the TLS certificate and key");
				rr_broker_tls_load(&broker);
			} else {
				rr_info("SIGHUP: nothing to reload (no --tls-cert)");
			}
			continue;
		}
		break;
	}
	rr_info("%s: draining (at most %llu ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
		(unsigned long long)broker.cfg.drain_timeout_ms);
	rr_broker_drain(&broker);
	if (!rr_broker_join(&broker, broker.cfg.drain_timeout_ms)) {
		rr_warn("drain timeout passed with members still connected: exiting");
		fflush(NULL);
		_exit(0);
	}
	rr_broker_free(&broker);
	rr_iplimit_free();
	rr_info("bye");
	return 0;
}

/*
 * The broker: its cores as a whole (probe, create, drain, stop, join), the
 * TLS context the cores share, and where a room lives.
 */
#include "core/hash.h"
#include "core/log.h"
#include "core/time.h"
#include "reactor/file.h"
#include "reactor/loop.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int rr_broker_init(struct rr_broker *b)
{
	char msg[256];
	int rc = rr_ring_probe(&b->features, msg, sizeof(msg));
	if (rc < 0) {
		rr_err("%s", msg);
		return rc;
	}
	rr_info("io_uring: %s, fixed-file table %u slots per core",
		b->features.defer_taskrun  ? "SINGLE_ISSUER|DEFER_TASKRUN"
		: b->features.coop_taskrun ? "COOP_TASKRUN (DEFER_TASKRUN unavailable)"
					   : "no task-run flags",
		b->features.max_fixed_files);
	b->ncores = b->cfg.cores;
	b->start_ms = rr_now_ms();
	b->cores = calloc(b->ncores, sizeof(*b->cores));
	if (b->cores == NULL)
		return -ENOMEM;
	pthread_mutex_init(&b->tls_lock, NULL);
	char err[160];
	if (rr_proxy_from_parse(b->cfg.proxy_from, &b->proxy_from, err, sizeof(err)) < 0) {
		rr_err("--proxy-from: %s", err);
		return -EINVAL;
	}
	if (b->cfg.tls_cert[0] && rr_broker_tls_load(b) < 0)
		return -EINVAL;
	for (unsigned i = 0; i < b->ncores; i++) {
		b->cores[i].id = i;
		b->cores[i].broker = b;
		b->cores[i].listen_fd = -1;
		b->cores[i].tls_listen_fd = -1;
		b->cores[i].ring_fd = -1;
	}
	return 0;
}

unsigned rr_broker_home(const struct rr_broker *b, const char *name, size_t n)
{
	return (unsigned)(rr_hash(name, n) % b->ncores);
}

static void wake_cores(struct rr_broker *b)
{
	struct io_uring ring;

	/* Wake every core: a MSG_RING CQE ends its wait at once. */
	if (io_uring_queue_init(8, &ring, 0) < 0)
		return; /* cores notice within their next timer wake-up */
	for (unsigned i = 0; i < b->ncores; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		io_uring_prep_msg_ring(sqe, b->cores[i].ring_fd, 0, rr_ud_ptr(RR_UD_WAKE, NULL), 0);
		io_uring_sqe_set_data64(sqe, 0);
	}
	io_uring_submit_and_wait(&ring, b->ncores);
	io_uring_queue_exit(&ring);
}

void rr_broker_drain(struct rr_broker *b)
{
	atomic_store(&b->draining, true);
	wake_cores(b);
}

void rr_broker_close_members(struct rr_broker *b)
{
	atomic_store(&b->closing, true);
	wake_cores(b);
}

bool rr_broker_drained(struct rr_broker *b)
{
	return atomic_load(&b->cores_drained) >= b->ncores;
}

void rr_broker_stop(struct rr_broker *b)
{
	atomic_store(&b->stopping, true);
	wake_cores(b);
}

bool rr_broker_join(struct rr_broker *b, uint64_t timeout_ms)
{
	struct timespec deadline;
	bool all = true;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += (time_t)(timeout_ms / 1000);
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	for (unsigned i = 0; i < b->ncores; i++) {
		if (pthread_timedjoin_np(b->cores[i].thread, NULL, &deadline) != 0)
			all = false;
	}
	return all;
}

void rr_broker_free(struct rr_broker *b)
{
	if (b->cores == NULL)
		return;
	for (unsigned i = 0; i < b->ncores; i++)
		rr_core_teardown(&b->cores[i]);
	free(b->cores);
	b->cores = NULL;
	if (b->tls_ctx)
		rr_tls_ctx_unref(b->tls_ctx);
	b->tls_ctx = NULL;
	rr_tls_thread_exit();
}

int rr_broker_tls_load(struct rr_broker *b)
{
	char *cert = NULL, *key = NULL;
	size_t cert_len = 0, key_len = 0;
	char err[256];
	struct rr_tls_ctx *ctx = NULL;
	int rc;

	rc = rr_file_read(b->cfg.tls_cert, 1 << 20, &cert, &cert_len);
	if (rc < 0) {
		rr_err("--tls-cert %s: %s", b->cfg.tls_cert, strerror(-rc));
		return rc;
	}
	rc = rr_file_read(b->cfg.tls_key, 1 << 20, &key, &key_len);
	if (rc < 0) {
		rr_err("--tls-key %s: %s", b->cfg.tls_key, strerror(-rc));
		free(cert);
		return rc;
	}
	rc = rr_tls_ctx_new(&ctx, cert, cert_len, key, key_len, err, sizeof(err));
	/* the key's bytes don't linger in freed memory */
	explicit_bzero(key, key_len);
	free(key);
	free(cert);
	if (rc < 0) {
		rr_err("TLS certificate/key refused (%s); %s", err,
		       b->tls_ctx ? "keeping the one in use" : "not starting");
		return rc;
	}
	pthread_mutex_lock(&b->tls_lock);
	struct rr_tls_ctx *old = b->tls_ctx;
	b->tls_ctx = ctx;
	pthread_mutex_unlock(&b->tls_lock);
	if (old)
		rr_tls_ctx_unref(old); /* connections keep their own references */
	rr_info("TLS certificate loaded from %s", b->cfg.tls_cert);
	return 0;
}

struct rr_tls_ctx *rr_broker_tls_ctx(struct rr_broker *b)
{
	pthread_mutex_lock(&b->tls_lock);
	struct rr_tls_ctx *ctx = b->tls_ctx;
	if (ctx)
		rr_tls_ctx_ref(ctx);
	pthread_mutex_unlock(&b->tls_lock);
	return ctx;
}

/*
 * The per-core reactor: set-up of each core's ring, buffers and listeners,
 * the dispatch table the layers above register into, and the loop.
 *
 * DESIGN: see loop.h. This file includes nothing above the reactor: every
 * completion is handed to the handler registered for its user_data kind,
 * and every layer's per-core work runs from its registered hooks.
 */
#include "reactor/loop.h"
#include "core/assert.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "net/listen.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RR_UD_KINDS 256

static const struct rr_layer *layers[RR_LAYERS];
static rr_cqe_fn *handlers[RR_UD_KINDS];
static __thread struct rr_core *tl_core;

void rr_reactor_layer(enum rr_layer_id id, const struct rr_layer *l)
{
	rr_assert(id < RR_LAYERS);
	layers[id] = l;
}

void rr_reactor_on(enum rr_ud_kind kind, rr_cqe_fn *fn)
{
	rr_assert((unsigned)kind < RR_UD_KINDS);
	handlers[kind] = fn;
}

struct rr_core *rr_core_current(void)
{
	return tl_core;
}

void rr_core_enter(struct rr_core *core)
{
	tl_core = core;
}

#define EACH_LAYER(l, hook)                                                                        \
	for (unsigned _i = 0; _i < RR_LAYERS; _i++)                                                \
		if ((l = layers[_i]) != NULL && l->hook != NULL)
#define EACH_LAYER_DOWN(l, hook)                                                                   \
	for (unsigned _i = RR_LAYERS; _i-- > 0;)                                                   \
		if ((l = layers[_i]) != NULL && l->hook != NULL)

int rr_core_setup(struct rr_broker *b, struct rr_core *core, unsigned id, bool listen)
{
	const struct rr_config *cfg = &b->cfg;
	const struct rr_layer *l;
	int rc;

	core->id = id;
	core->broker = b;
	core->listen_fd = -1;
	core->tls_listen_fd = -1;
	core->ring_fd = -1;
	tl_core = core;
	rc = rr_ring_init(&core->ring, RR_SQ_ENTRIES, &b->features);
	if (rc < 0) {
		rr_err("core %u: io_uring set-up failed: %s", id, strerror(-rc));
		return rc;
	}
	core->ring_fd = core->ring.ring_fd;

	/* Fixed-file table: one slot per connection this core may hold. The
	 * kernel holds a table to RLIMIT_NOFILE, so that is the ceiling. */
	uint32_t slots = b->features.max_fixed_files;
	if (slots > cfg->max_connections + RR_SLOTS_RESERVE)
		slots = cfg->max_connections + RR_SLOTS_RESERVE;
	rc = io_uring_register_files_sparse(&core->ring, slots);
	if (rc < 0) {
		rr_err("core %u: registering %u fixed-file slots failed: %s", id, slots,
		       strerror(-rc));
		return rc;
	}
	core->slots = slots;
	rc = rr_bufring_setup(&core->bufs, &core->ring, (uint32_t)cfg->recv_buffers,
			      (uint32_t)cfg->recv_buffer_size);
	if (rc < 0) {
		rr_err("core %u: provided buffer ring set-up failed: %s", id, strerror(-rc));
		return rc;
	}
	rr_wheel_init(&core->wheel, rr_now_ms());
	core->now_ms = rr_now_ms();

	if (listen && !cfg->tls_only) {
		core->listen_fd = rr_listen_open(cfg->bind, (uint16_t)cfg->port, 4096);
		if (core->listen_fd < 0)
			return core->listen_fd;
	}
	if (listen && cfg->tls_cert[0]) {
		core->tls_listen_fd = rr_listen_open(cfg->bind, (uint16_t)cfg->tls_port, 4096);
		if (core->tls_listen_fd < 0)
			return core->tls_listen_fd;
	}
	EACH_LAYER(l, init)
	{
		rc = l->init(core);
		if (rc < 0) {
			rr_err("core %u: %s set-up failed: %s", id, l->name, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

void rr_core_teardown(struct rr_core *core)
{
	const struct rr_layer *l;
	EACH_LAYER(l, fini) /* lowest first: connections still name their rooms */
	l->fini(core);
	rr_bufring_free(&core->bufs);
	if (core->listen_fd >= 0)
		close(core->listen_fd);
	if (core->tls_listen_fd >= 0)
		close(core->tls_listen_fd);
	core->listen_fd = core->tls_listen_fd = -1;
	if (core->ring_fd >= 0)
		io_uring_queue_exit(&core->ring);
	core->ring_fd = -1;
}

void rr_core_settle_flush(struct rr_core *core)
{
	const struct rr_layer *l;
	EACH_LAYER(l, settle)
	l->settle(core);
	EACH_LAYER(l, flush)
	l->flush(core);
}

void rr_core_dispatch(struct rr_core *core, const struct io_uring_cqe *cqe)
{
	rr_cqe_fn *fn = handlers[rr_ud_kind(io_uring_cqe_get_data64(cqe))];
	if (fn)
		fn(core, cqe);
}

static void close_listener(struct rr_core *core, int *fd)
{
	if (*fd < 0)
		return;
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	io_uring_prep_cancel_fd(sqe, *fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, 0);
	io_uring_submit(&core->ring);
	close(*fd);
	*fd = -1;
}

/* The drain and stop state machine, once per iteration. Returns false when
 * the loop should end. */
static bool core_lifecycle(struct rr_core *core)
{
	struct rr_broker *b = core->broker;
	const struct rr_layer *l;

	if (!core->draining && atomic_load_explicit(&b->closing, memory_order_relaxed)) {
		core->draining = true;
		rr_info("draining: closing %u members with 1001", core->members_live);
		EACH_LAYER(l, drain)
		l->drain(core);
	}
	if (core->draining && !core->drained && core->members_live == 0 &&
	    core->handoffs_inflight == 0) {
		core->drained = true; /* keeps answering /healthz with 503 */
		atomic_fetch_add(&b->cores_drained, 1);
	}
	if (atomic_load_explicit(&b->stopping, memory_order_relaxed) &&
	    (core->listen_fd >= 0 || core->tls_listen_fd >= 0)) {
		/* every core is drained (or the drain timed out): close the
		 * listeners together, so no connection waits in the backlog
		 * of a closed one, and answer requests still arriving */
		close_listener(core, &core->listen_fd);
		close_listener(core, &core->tls_listen_fd);
		EACH_LAYER(l, stopped_listening)
		l->stopped_listening(core);
	}
	/* the last closes have completed */
	return !(core->draining && core->listen_fd < 0 && core->tls_listen_fd < 0 &&
		 core->conns_live == 0 && core->store_inflight == 0 &&
		 core->handoffs_inflight == 0 && core->accepts_inflight == 0 &&
		 core->cluster_inflight == 0);
}

static void core_run(struct rr_core *core)
{
	for (;;) {
		core->now_ms = rr_now_ms();
		rr_wheel_advance(&core->wheel, core->now_ms);
		if (!core_lifecycle(core))
			break;
		rr_core_settle_flush(core);

		struct __kernel_timespec ts, *tsp = NULL;
		int64_t wait_ms = rr_wheel_next_ms(&core->wheel, core->now_ms);
		if (core->draining && (wait_ms < 0 || wait_ms > 100))
			wait_ms = 100; /* re-check the drain state */
		if (wait_ms >= 0) {
			ts.tv_sec = wait_ms / 1000;
			ts.tv_nsec = (wait_ms % 1000) * 1000000;
			tsp = &ts;
		}
		struct io_uring_cqe *cqe = NULL;
		int rc = io_uring_submit_and_wait_timeout(&core->ring, &cqe, 1, tsp, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
			rr_err("io_uring_submit_and_wait: %s", strerror(-rc));
			break;
		}

		core->now_ms = rr_now_ms();
		unsigned head, n = 0;
		io_uring_for_each_cqe(&core->ring, head, cqe)
		{
			rr_core_dispatch(core, cqe);
			if (++n == RR_CQE_BATCH)
				break;
		}
		io_uring_cq_advance(&core->ring, n);
		rr_bufring_publish(&core->bufs);
	}
}

static void *core_main(void *arg)
{
	struct rr_core *core = arg;
	struct rr_broker *b = core->broker;
	const struct rr_layer *l;
	char name[16];
	cpu_set_t set;

	snprintf(name, sizeof(name), "core%u", core->id);
	rr_log_set_thread(name);

	/* The ring is created here, not by the main thread: with
	 * SINGLE_ISSUER the creating task is the only one allowed to submit
	 * and register. Every core must be up before any hands off to another. */
	core->init_rc = rr_core_setup(b, core, core->id, true);
	pthread_barrier_wait(&b->ready);
	pthread_barrier_wait(&b->go);
	if (atomic_load(&b->abort_start))
		return NULL;

	CPU_ZERO(&set);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	CPU_SET(core->id % (unsigned)(ncpu > 0 ? ncpu : 1), &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
		rr_warn("could not pin to CPU %u", core->id);

	core->now_ms = rr_now_ms();
	EACH_LAYER(l, start)
	l->start(core);
	core_run(core);
	core->stopped = true;
	EACH_LAYER_DOWN(l, stop)
	l->stop(core);
	rr_info("core stopped");
	return NULL;
}

int rr_broker_start(struct rr_broker *b)
{
	pthread_barrier_init(&b->ready, NULL, b->ncores + 1);
	pthread_barrier_init(&b->go, NULL, b->ncores + 1);
	for (unsigned i = 0; i < b->ncores; i++) {
		int rc = pthread_create(&b->cores[i].thread, NULL, core_main, &b->cores[i]);
		if (rc != 0) {
			rr_err("pthread_create: %s", strerror(rc));
			abort(); /* the barriers can't be released: nothing sane to do */
		}
		b->cores[i].started = true;
	}
	pthread_barrier_wait(&b->ready);
	int failed = 0;
	for (unsigned i = 0; i < b->ncores; i++)
		if (b->cores[i].init_rc < 0)
			failed = b->cores[i].init_rc;
	if (failed)
		atomic_store(&b->abort_start, true);
	pthread_barrier_wait(&b->go);
	if (failed) {
		for (unsigned i = 0; i < b->ncores; i++)
			pthread_join(b->cores[i].thread, NULL);
		return failed;
	}
	if (!b->cfg.tls_only)
		rr_info("listening on %s:%u with %u cores", b->cfg.bind, b->cfg.port, b->ncores);
	if (b->cfg.tls_cert[0])
		rr_info("listening for TLS on %s:%u", b->cfg.bind, b->cfg.tls_port);
	return 0;
}

/*
 * The per-core reactor: set-up of each core's ring, buffers and listener,
 * the event loop, and the broker-wide start, drain and join.
 *
 * DESIGN: one iteration = fire due timers → flush every dirty connection
 * (one send each) → re-arm receives paused by -ENOBUFS → submit everything
 * and wait in the same io_uring_enter (with the next timer deadline as its
 * timeout) → reap at most RR_CQE_BATCH completions → give the receive
 * buffers back. Bounding the batch bounds the work between two flushes.
 */
#include "reactor/loop.h"
#include "conn/conn.h"
#include "core/assert.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "net/listen.h"
#include "reactor/ud.h"
#include "reactor/file.h"
#include "persist/store.h"
#include "room/handler.h"
#include "room/room.h"
#include "tls/tls.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCRATCH_MSGS 4096
#define SCRATCH_IOVS (64 * 1024)
#define RR_ACCEPT_SLOTS 32

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;
	while (p < n && p < (1u << 31))
		p <<= 1;
	return p;
}

static void provide_buffers(struct rr_core *core, uint32_t n);

static int setup_buffers(struct rr_core *core, const struct rr_config *cfg)
{
	struct io_uring_buf_reg reg;
	size_t ring_bytes;
	int rc;

	core->nbufs = pow2_at_least(cfg->recv_buffers);
	if (core->nbufs > 32768)
		core->nbufs = 32768;
	core->buf_size = (uint32_t)cfg->recv_buffer_size;
	ring_bytes = core->nbufs * sizeof(struct io_uring_buf);
	void *ring_mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ring_mem == MAP_FAILED)
		return -ENOMEM;
	core->br = ring_mem;
	core->bufs = mmap(NULL, (size_t)core->nbufs * core->buf_size, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (core->bufs == MAP_FAILED) {
		core->bufs = NULL;
		return -ENOMEM;
	}
	io_uring_buf_ring_init(core->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)core->br;
	reg.ring_entries = core->nbufs;
	reg.bgid = 0;
	rc = io_uring_register_buf_ring(&core->ring, &reg, 0);
	if (rc < 0)
		return rc;
	/* Start with a few buffers and add more only when receives run dry:
	 * the ring is FIFO, so every buffer ever provided keeps cycling and
	 * stays resident. A light load keeps a small working set. */
	core->bufs_provided = 0;
	provide_buffers(core, RR_RECV_BUFFERS_STEP);
	return 0;
}

static void provide_buffers(struct rr_core *core, uint32_t n)
{
	int mask = io_uring_buf_ring_mask(core->nbufs);
	if (n > core->nbufs - core->bufs_provided)
		n = core->nbufs - core->bufs_provided;
	/* after the returns already staged this batch */
	for (uint32_t i = 0; i < n; i++) {
		uint32_t bid = core->bufs_provided + i;
		io_uring_buf_ring_add(core->br, core->bufs + (size_t)bid * core->buf_size,
				      core->buf_size, (unsigned short)bid, mask,
				      (int)(core->bufs_to_return + i));
	}
	core->bufs_to_return += n;
	core->bufs_provided += n;
	if (core->bufs_to_return) {
		io_uring_buf_ring_advance(core->br, (int)core->bufs_to_return);
		core->bufs_to_return = 0;
	}
}

void rr_core_return_buffer(struct rr_core *core, uint32_t bid)
{
	io_uring_buf_ring_add(core->br, core->bufs + (size_t)bid * core->buf_size, core->buf_size,
			      (unsigned short)bid, io_uring_buf_ring_mask(core->nbufs),
			      (int)core->bufs_to_return);
	core->bufs_to_return++;
}

static int core_init(struct rr_broker *b, struct rr_core *core, unsigned id)
{
	const struct rr_config *cfg = &b->cfg;
	int rc;

	core->id = id;
	core->broker = b;
	core->listen_fd = -1;
	core->tls_listen_fd = -1;
	core->ring_fd = -1;
	rc = rr_ring_init(&core->ring, RR_SQ_ENTRIES, &b->features);
	if (rc < 0) {
		rr_err("core %u: io_uring set-up failed: %s", id, strerror(-rc));
		return rc;
	}
	core->ring_fd = core->ring.ring_fd;

	/* Fixed-file table: one slot per connection this core may hold. The
	 * kernel holds a table to RLIMIT_NOFILE, so that is the ceiling. */
	uint32_t slots = b->features.max_fixed_files;
	if (slots > cfg->max_connections + 64)
		slots = cfg->max_connections + 64;
	rc = io_uring_register_files_sparse(&core->ring, slots);
	if (rc < 0) {
		rr_err("core %u: registering %u fixed-file slots failed: %s", id, slots,
		       strerror(-rc));
		return rc;
	}
	/* Connection slots: +25 % for connections handed to this core. The
	 * mapping is lazily backed, so unused slots cost no memory. */
	core->slots = slots;
	core->conns_cap = slots + slots / 4;
	core->conns = mmap(NULL, (size_t)core->conns_cap * sizeof(struct rr_conn),
			   PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			   -1, 0);
	if (core->conns == MAP_FAILED) {
		core->conns = NULL;
		return -ENOMEM;
	}
	rc = setup_buffers(core, cfg);
	if (rc < 0) {
		rr_err("core %u: provided buffer ring set-up failed: %s", id, strerror(-rc));
		return rc;
	}
	core->msgs_cap = SCRATCH_MSGS;
	core->iovs_cap = SCRATCH_IOVS;
	core->msgs = calloc(core->msgs_cap, sizeof(*core->msgs));
	core->iovs = calloc(core->iovs_cap, sizeof(*core->iovs));
	core->rooms = calloc(1, sizeof(*core->rooms));
	if (core->msgs == NULL || core->iovs == NULL || core->rooms == NULL ||
	    rr_room_table_init(core->rooms) < 0)
		return -ENOMEM;
	rr_wheel_init(&core->wheel, rr_now_ms());

	if (!cfg->tls_only) {
		core->listen_fd = rr_listen_open(cfg->bind, (uint16_t)cfg->port, 4096);
		if (core->listen_fd < 0)
			return core->listen_fd;
	}
	if (cfg->tls_cert[0]) {
		core->tls_listen_fd = rr_listen_open(cfg->bind, (uint16_t)cfg->tls_port, 4096);
		if (core->tls_listen_fd < 0)
			return core->tls_listen_fd;
		core->tls_plain_cap = RR_TLS_RECORD_MAX + 256;
		core->tls_plain = malloc(core->tls_plain_cap);
		if (core->tls_plain == NULL)
			return -ENOMEM;
	}
	return 0;
}

static void core_free(struct rr_core *core)
{
	rr_conn_release_all(core);
	if (core->rooms) {
		rr_room_table_free(core, core->rooms);
		free(core->rooms);
	}
	free(core->msgs);
	free(core->iovs);
	free(core->accept_slots);
	if (core->conns)
		munmap(core->conns, (size_t)core->conns_cap * sizeof(struct rr_conn));
	if (core->bufs)
		munmap(core->bufs, (size_t)core->nbufs * core->buf_size);
	if (core->br)
		munmap(core->br, core->nbufs * sizeof(struct io_uring_buf));
	if (core->listen_fd >= 0)
		close(core->listen_fd);
	if (core->tls_listen_fd >= 0)
		close(core->tls_listen_fd);
	free(core->tls_plain);
	if (core->ring_fd >= 0)
		io_uring_queue_exit(&core->ring);
}

/* Single-shot accepts, each with its own address buffer: used when the
 * peer's address is needed (--max-connections-per-ip), since a multishot
 * accept has one buffer for every connection it takes. */
struct rr_accept_slot {
	struct sockaddr_storage ss;
	socklen_t len;
	bool tls;
};

static void arm_accept_slot(struct rr_core *core, struct rr_accept_slot *a)
{
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	a->len = sizeof(a->ss);
	io_uring_prep_accept(sqe, a->tls ? core->tls_listen_fd : core->listen_fd,
			     (struct sockaddr *)&a->ss, &a->len, 0);
	/* liburing 2.3's prep_accept_direct can't express ALLOC: set it here */
	sqe->file_index = IORING_FILE_INDEX_ALLOC;
	io_uring_sqe_set_data64(sqe, rr_ud_ptr(RR_UD_ACCEPT, a));
	core->accepts_inflight++;
}

static void arm_multishot(struct rr_core *core, bool tls)
{
	struct io_uring_sqe *sqe = rr_ring_sqe(&core->ring);
	/* no SOCK_CLOEXEC: a direct descriptor is not in the fd table at all */
	io_uring_prep_multishot_accept_direct(sqe, tls ? core->tls_listen_fd : core->listen_fd,
					      NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, rr_ud_ptr(tls ? RR_UD_ACCEPT_TLS : RR_UD_ACCEPT, NULL));
	core->accepts_inflight++;
}

static void arm_accept(struct rr_core *core)
{
	if (core->broker->cfg.max_connections_per_ip) {
		if (core->accept_slots == NULL) {
			core->accept_slots = calloc(2 * RR_ACCEPT_SLOTS, sizeof(struct rr_accept_slot));
			if (core->accept_slots == NULL)
				return;
		}
		for (unsigned i = 0; i < 2 * RR_ACCEPT_SLOTS; i++) {
			struct rr_accept_slot *a = &core->accept_slots[i];
			a->tls = i >= RR_ACCEPT_SLOTS;
			if ((a->tls ? core->tls_listen_fd : core->listen_fd) >= 0)
				arm_accept_slot(core, a);
		}
		return;
	}
	if (core->listen_fd >= 0)
		arm_multishot(core, false);
	if (core->tls_listen_fd >= 0)
		arm_multishot(core, true);
}

static void arm_multishot(struct rr_core *core, bool tls);

static void accept_retry_fn(struct rr_timer *t, uint64_t now_ms, bool tls, struct rr_core *core)
{
	(void)t;
	(void)now_ms;
	int lfd = tls ? core->tls_listen_fd : core->listen_fd;
	if (!core->stopped && lfd >= 0)
		arm_multishot(core, tls);
}

static void accept_retry_plain(struct rr_timer *t, uint64_t now_ms)
{
	accept_retry_fn(t, now_ms, false, rr_container_of(t, struct rr_core, accept_retry[0]));
}

static void accept_retry_tls(struct rr_timer *t, uint64_t now_ms)
{
	accept_retry_fn(t, now_ms, true, rr_container_of(t, struct rr_core, accept_retry[1]));
}

static void on_accept(struct rr_core *core, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct rr_accept_slot *a = rr_ud_to_ptr(ud);
	bool tls = a ? a->tls : rr_ud_kind(ud) == RR_UD_ACCEPT_TLS;
	int lfd = tls ? core->tls_listen_fd : core->listen_fd;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		core->accepts_inflight--; /* until then the listener stays open */
	if (a) {
		if (cqe->res >= 0)
			rr_conn_on_accept(core, cqe->res, (struct sockaddr *)&a->ss, tls);
		else if (cqe->res != -ECANCELED)
			rr_debug("accept: %s", strerror(-cqe->res));
		if (!core->stopped && lfd >= 0 && cqe->res != -EINVAL && cqe->res != -EBADF)
			arm_accept_slot(core, a);
		return;
	}
	bool rearm = !(cqe->flags & IORING_CQE_F_MORE);
	if (cqe->res >= 0) {
		rr_conn_on_accept(core, cqe->res, NULL, tls);
	} else if (cqe->res == -ENFILE) {
		/* The table is full (the kernel dropped that connection): stop
		 * accepting for a moment, so the next ones wait in the backlog
		 * or go to another core's listener instead of being dropped. */
		static __thread uint64_t last_log;
		if (core->now_ms - last_log > 1000) {
			rr_warn("fixed-file table full (%u slots): pausing accepts", core->slots);
			last_log = core->now_ms;
		}
		struct rr_timer *rt = &core->accept_retry[tls ? 1 : 0];
		if (rearm && !rr_timer_armed(rt)) {
			rr_timer_init(rt, tls ? accept_retry_tls : accept_retry_plain);
			rr_timer_set(&core->wheel, rt, core->now_ms + 50);
		}
		rearm = false;
	} else if (cqe->res == -EINVAL || cqe->res == -EBADF) {
		/* not transient: re-arming would spin */
		if (lfd >= 0)
			rr_err("accept: %s; this listener stops accepting", strerror(-cqe->res));
		rearm = false;
	} else if (cqe->res != -ECANCELED) {
		rr_debug("accept: %s", strerror(-cqe->res));
	}
	if (rearm && !core->stopped && lfd >= 0 && cqe->res != -ECANCELED)
		arm_multishot(core, tls);
}

static void dispatch(struct rr_core *core, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum rr_ud_kind kind = rr_ud_kind(ud);
	struct rr_conn *c;

	switch (kind) {
	case RR_UD_ACCEPT:
	case RR_UD_ACCEPT_TLS:
		on_accept(core, cqe);
		return;
	case RR_UD_RECV:
		c = rr_conn_lookup(core, ud);
		if (c == NULL) {
			/* a stale completion still owns a buffer: give it back */
			if (cqe->flags & IORING_CQE_F_BUFFER)
				rr_core_return_buffer(core, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			return;
		}
		rr_conn_on_recv(core, c, cqe->res, cqe->flags);
		return;
	case RR_UD_SEND:
		c = rr_conn_lookup(core, ud);
		if (c)
			rr_conn_on_send(core, c, cqe->res);
		return;
	case RR_UD_SHUTDOWN:
	case RR_UD_CLOSE:
	case RR_UD_HANDOFF_OUT:
		c = rr_conn_lookup(core, ud);
		if (c)
			rr_conn_on_op_done(core, c, kind, cqe->res);
		return;
	case RR_UD_HANDOFF_IN:
		rr_conn_on_handoff_in(core, rr_ud_to_ptr(ud), cqe->res);
		return;
	case RR_UD_STORE:
		rr_handler_store_done(core, rr_ud_to_ptr(ud));
		return;
	case RR_UD_WAKE:
	case RR_UD_NONE:
	default:
		return;
	}
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

static void core_start_drain(struct rr_core *core)
{
	core->draining = true;
	rr_info("draining: closing %u members with 1001", core->members_live);
	rr_conn_drain(core);
}

static void *core_main(void *arg)
{
	struct rr_core *core = arg;
	struct rr_broker *b = core->broker;
	char name[16];
	cpu_set_t set;

	snprintf(name, sizeof(name), "core%u", core->id);
	rr_log_set_thread(name);
	rr_conn_set_core(core);

	/* The ring is created here, not by the main thread: with
	 * SINGLE_ISSUER the creating task is the only one allowed to submit
	 * and register. Every core must be up before any hands off to another. */
	core->init_rc = core_init(b, core, core->id);
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
	arm_accept(core);
	rr_handler_core_start(core);

	for (;;) {
		core->now_ms = rr_now_ms();
		rr_wheel_advance(&core->wheel, core->now_ms);

		if (!core->draining && atomic_load_explicit(&b->draining, memory_order_relaxed))
			core_start_drain(core);
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
			rr_conn_drop_handshakes(core);
		}
		if (core->draining && core->listen_fd < 0 && core->tls_listen_fd < 0 &&
		    core->conns_live == 0 && core->store_inflight == 0 &&
		    core->handoffs_inflight == 0 && core->accepts_inflight == 0)
			break; /* the last closes have completed */

		rr_conn_flush_all(core);
		rr_conn_rearm_all(core);

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
		core->msgs_used = 0;
		core->iovs_used = 0;
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
			rr_err("io_uring_submit_and_wait: %s", strerror(-rc));
			break;
		}

		core->now_ms = rr_now_ms();
		unsigned head, n = 0;
		io_uring_for_each_cqe(&core->ring, head, cqe)
		{
			dispatch(core, cqe);
			if (++n == RR_CQE_BATCH)
				break;
		}
		io_uring_cq_advance(&core->ring, n);
		if (core->bufs_short && core->bufs_provided < core->nbufs) {
			provide_buffers(core, RR_RECV_BUFFERS_STEP); /* publishes returns too */
			rr_debug("receive buffers: %u of %u provided", core->bufs_provided,
				 core->nbufs);
		}
		core->bufs_short = false;
		if (core->bufs_to_return) {
			io_uring_buf_ring_advance(core->br, (int)core->bufs_to_return);
			core->bufs_to_return = 0;
		}
	}
	core->stopped = true;
	rr_handler_core_stop(core);
	rr_tls_thread_exit();
	rr_info("core stopped");
	return NULL;
}

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
	if (b->cfg.tls_cert[0] && rr_broker_tls_load(b) < 0)
		return -EINVAL;
	for (unsigned i = 0; i < b->ncores; i++) {
		b->cores[i].id = i;
		b->cores[i].broker = b;
		b->cores[i].listen_fd = -1;
		b->cores[i].ring_fd = -1;
	}
	return 0;
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

static void wake_cores(struct rr_broker *b);

void rr_broker_drain(struct rr_broker *b)
{
	atomic_store(&b->draining, true);
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
		core_free(&b->cores[i]);
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

/*
 * io_uring set-up and feature probing: see ring.h and kernel-notes/.
 */
#include "reactor/ring.h"
#include "core/assert.h"
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>

static const struct {
	int op;
	const char *name;
	const char *kernel;
} required_ops[] = {
	{IORING_OP_ACCEPT, "IORING_OP_ACCEPT", "5.5"},
	{IORING_OP_RECV, "IORING_OP_RECV", "5.6"},
	{IORING_OP_SENDMSG, "IORING_OP_SENDMSG", "5.3"},
	{IORING_OP_CLOSE, "IORING_OP_CLOSE", "5.6"},
	{IORING_OP_SHUTDOWN, "IORING_OP_SHUTDOWN", "5.11"},
	{IORING_OP_MSG_RING, "IORING_OP_MSG_RING", "5.18"},
	{IORING_OP_READ, "IORING_OP_READ", "5.6"},
	{IORING_OP_OPENAT, "IORING_OP_OPENAT", "5.6"},
};

static bool kernel_at_least(int major, int minor)
{
	struct utsname u;
	int ma = 0, mi = 0;
	if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
		return false;
	return ma > major || (ma == major && mi >= minor);
}

int rr_ring_probe(struct rr_ring_features *f, char *msg, size_t msg_len)
{
	struct io_uring ring;
	struct io_uring_params p;
	int rc;

	memset(f, 0, sizeof(*f));
	memset(&p, 0, sizeof(p));
	rc = io_uring_queue_init_params(8, &ring, &p);
	if (rc < 0) {
		snprintf(msg, msg_len, "io_uring is not available (%s): ringroom needs Linux 6.0+",
			 strerror(-rc));
		return -ENOTSUP;
	}
	f->ext_arg = p.features & IORING_FEAT_EXT_ARG;
	f->submit_stable = p.features & IORING_FEAT_SUBMIT_STABLE;

	struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
	if (probe == NULL) {
		io_uring_queue_exit(&ring);
		snprintf(msg, msg_len, "io_uring opcode probe failed: ringroom needs Linux 6.0+");
		return -ENOTSUP;
	}
	for (size_t i = 0; i < sizeof(required_ops) / sizeof(required_ops[0]); i++) {
		if (!io_uring_opcode_supported(probe, required_ops[i].op)) {
			snprintf(msg, msg_len, "kernel lacks %s (Linux %s+)", required_ops[i].name,
				 required_ops[i].kernel);
			io_uring_free_probe(probe);
			io_uring_queue_exit(&ring);
			return -ENOTSUP;
		}
	}
	io_uring_free_probe(probe);

	/* Provided buffer rings (5.19): register a tiny one and drop it. */
	struct io_uring_buf_reg reg;
	void *mem = NULL;
	if (posix_memalign(&mem, 4096, 4096) != 0) {
		io_uring_queue_exit(&ring);
		snprintf(msg, msg_len, "out of memory while probing");
		return -ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)mem;
	reg.ring_entries = 8;
	reg.bgid = 0;
	rc = io_uring_register_buf_ring(&ring, &reg, 0);
	if (rc == 0)
		io_uring_unregister_buf_ring(&ring, 0);
	free(mem);
	if (rc < 0) {
		io_uring_queue_exit(&ring);
		snprintf(msg, msg_len, "kernel lacks provided buffer rings "
				       "(IORING_REGISTER_PBUF_RING, Linux 5.19+): %s",
			 strerror(-rc));
		return -ENOTSUP;
	}

	/* Sparse fixed-file table (5.19 for IORING_FILE_INDEX_ALLOC). */
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	f->max_fixed_files = rl.rlim_cur > 1u << 20 ? 1u << 20 : (unsigned)rl.rlim_cur;
	rc = io_uring_register_files_sparse(&ring, 16);
	if (rc < 0) {
		io_uring_queue_exit(&ring);
		snprintf(msg, msg_len, "kernel lacks sparse fixed-file tables (Linux 5.19+): %s",
			 strerror(-rc));
		return -ENOTSUP;
	}
	io_uring_queue_exit(&ring);

	/* Multishot recv and MSG_RING fd passing have no opcode of their own to
	 * probe: they arrived in 6.0; the release number decides. */
	if (!kernel_at_least(6, 0)) {
		snprintf(msg, msg_len, "kernel lacks multishot recv and IORING_MSG_SEND_FD "
				       "(Linux 6.0+)");
		return -ENOTSUP;
	}
	if (!f->ext_arg) {
		snprintf(msg, msg_len, "kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11+)");
		return -ENOTSUP;
	}

	/* Optional: DEFER_TASKRUN (6.1), else COOP_TASKRUN (5.19). */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	if (io_uring_queue_init_params(8, &ring, &p) == 0) {
		f->defer_taskrun = true;
		io_uring_queue_exit(&ring);
	} else {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_COOP_TASKRUN;
		if (io_uring_queue_init_params(8, &ring, &p) == 0) {
			f->coop_taskrun = true;
			io_uring_queue_exit(&ring);
		}
	}
	return 0;
}

int rr_ring_init(struct io_uring *ring, unsigned entries, const struct rr_ring_features *f)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = entries * 4;
	if (f->defer_taskrun)
		p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	else if (f->coop_taskrun)
		p.flags |= IORING_SETUP_COOP_TASKRUN;
	return io_uring_queue_init_params(entries, ring, &p);
}

struct io_uring_sqe *rr_ring_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (rr_unlikely(sqe == NULL)) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
		rr_assert(sqe != NULL);
	}
	return sqe;
}

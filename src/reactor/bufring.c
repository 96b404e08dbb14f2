/*
 * A core's provided receive buffers: one buffer ring (group 0) that every
 * receive of the core selects from.
 *
 * DESIGN: the ring starts with a few buffers and grows by
 * RR_RECV_BUFFERS_STEP only when receives run dry (-ENOBUFS): the ring is
 * FIFO, so every buffer ever provided keeps cycling and stays resident, and a
 * light load keeps a small working set. Returned buffers are staged and
 * published once per batch.
 */
#include "core/limits.h"
#include "core/log.h"
#include "reactor/loop.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;
	while (p < n && p < (1u << 31))
		p <<= 1;
	return p;
}

static void provide_buffers(struct rr_core *core, uint32_t n)
{
	int mask = io_uring_buf_ring_mask(core->nbufs);
	if (n > core->nbufs - core->bufs_provided)
		n = core->nbufs - core->bufs_provided;
	/* after the returns already staged this batch */
	for (uint32_t i = 0; i < n; i++) {
		uint32_t bid = core->bufs_provided + i;
		io_uring_buf_ring_add(core->br, rr_core_buf(core, bid), core->buf_size,
				      (unsigned short)bid, mask, (int)(core->bufs_to_return + i));
	}
	core->bufs_to_return += n;
	core->bufs_provided += n;
	if (core->bufs_to_return) {
		io_uring_buf_ring_advance(core->br, (int)core->bufs_to_return);
		core->bufs_to_return = 0;
	}
}

int rr_bufring_setup(struct rr_core *core, const struct rr_config *cfg)
{
	struct io_uring_buf_reg reg;

	core->nbufs = pow2_at_least(cfg->recv_buffers);
	if (core->nbufs > RR_RECV_BUFFERS_CEIL)
		core->nbufs = RR_RECV_BUFFERS_CEIL;
	core->buf_size = (uint32_t)cfg->recv_buffer_size;
	size_t ring_bytes = core->nbufs * sizeof(struct io_uring_buf);
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
	int rc = io_uring_register_buf_ring(&core->ring, &reg, 0);
	if (rc < 0)
		return rc;
	core->bufs_provided = 0;
	provide_buffers(core, RR_RECV_BUFFERS_STEP);
	return 0;
}

void rr_bufring_free(struct rr_core *core)
{
	if (core->bufs)
		munmap(core->bufs, (size_t)core->nbufs * core->buf_size);
	if (core->br)
		munmap(core->br, core->nbufs * sizeof(struct io_uring_buf));
	core->bufs = NULL;
	core->br = NULL;
}

void rr_core_return_buffer(struct rr_core *core, uint32_t bid)
{
	io_uring_buf_ring_add(core->br, rr_core_buf(core, bid), core->buf_size,
			      (unsigned short)bid, io_uring_buf_ring_mask(core->nbufs),
			      (int)core->bufs_to_return);
	core->bufs_to_return++;
}

void rr_bufring_publish(struct rr_core *core)
{
	if (core->bufs_short && core->bufs_provided < core->nbufs) {
		provide_buffers(core, RR_RECV_BUFFERS_STEP); /* publishes returns too */
		rr_debug("receive buffers: %u of %u provided", core->bufs_provided, core->nbufs);
	}
	core->bufs_short = false;
	if (core->bufs_to_return) {
		io_uring_buf_ring_advance(core->br, (int)core->bufs_to_return);
		core->bufs_to_return = 0;
	}
}

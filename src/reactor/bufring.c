/* A core's provided receive buffers: see bufring.h. */
#include "reactor/bufring.h"
#include "core/limits.h"
#include "core/log.h"

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

static void provide_buffers(struct rr_bufring *b, uint32_t n)
{
	int mask = io_uring_buf_ring_mask(b->nbufs);
	if (n > b->nbufs - b->provided)
		n = b->nbufs - b->provided;
	/* after the returns already staged this batch */
	for (uint32_t i = 0; i < n; i++) {
		uint32_t bid = b->provided + i;
		io_uring_buf_ring_add(b->br, rr_bufring_buf(b, bid), b->size, (unsigned short)bid,
				      mask, (int)(b->to_return + i));
	}
	b->to_return += n;
	b->provided += n;
	if (b->to_return) {
		io_uring_buf_ring_advance(b->br, (int)b->to_return);
		b->to_return = 0;
	}
}

int rr_bufring_setup(struct rr_bufring *b, struct io_uring *ring, uint32_t nbufs, uint32_t size)
{
	struct io_uring_buf_reg reg;

	b->nbufs = pow2_at_least(nbufs);
	if (b->nbufs > RR_RECV_BUFFERS_CEIL)
		b->nbufs = RR_RECV_BUFFERS_CEIL;
	b->size = size;
	size_t ring_bytes = b->nbufs * sizeof(struct io_uring_buf);
	void *ring_mem =
	    mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ring_mem == MAP_FAILED)
		return -ENOMEM;
	b->br = ring_mem;
	b->bufs = mmap(NULL, (size_t)b->nbufs * b->size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->bufs == MAP_FAILED) {
		b->bufs = NULL;
		return -ENOMEM;
	}
	io_uring_buf_ring_init(b->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)b->br;
	reg.ring_entries = b->nbufs;
	reg.bgid = 0;
	int rc = io_uring_register_buf_ring(ring, &reg, 0);
	if (rc < 0)
		return rc;
	b->provided = 0;
	provide_buffers(b, RR_RECV_BUFFERS_STEP);
	return 0;
}

void rr_bufring_free(struct rr_bufring *b)
{
	if (b->bufs)
		munmap(b->bufs, (size_t)b->nbufs * b->size);
	if (b->br)
		munmap(b->br, b->nbufs * sizeof(struct io_uring_buf));
	b->bufs = NULL;
	b->br = NULL;
}

void rr_bufring_return(struct rr_bufring *b, uint32_t bid)
{
	io_uring_buf_ring_add(b->br, rr_bufring_buf(b, bid), b->size, (unsigned short)bid,
			      io_uring_buf_ring_mask(b->nbufs), (int)b->to_return);
	b->to_return++;
}

void rr_bufring_publish(struct rr_bufring *b)
{
	if (b->short_ && b->provided < b->nbufs) {
		provide_buffers(b, RR_RECV_BUFFERS_STEP); /* publishes returns too */
		rr_debug("receive buffers: %u of %u provided", b->provided, b->nbufs);
	}
	b->short_ = false;
	if (b->to_return) {
		io_uring_buf_ring_advance(b->br, (int)b->to_return);
		b->to_return = 0;
	}
}

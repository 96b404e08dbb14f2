/*
 * Queues between cores: what one core tells another about the members of a
 * spread room (conn.h, "spread rooms"), as a batch of operations per pair
 * of cores per iteration, passed with one IORING_OP_MSG_RING.
 *
 * DESIGN: operations are appended to the batch of their destination core
 * while the iteration runs and sent in its flush, so a broadcast of one
 * iteration costs one message per core, whatever the members. A batch
 * carries a sequence number per pair; the receiver runs batches in that
 * order (a post the kernel refused is retried, and the ones after it wait),
 * so everything one core says to another arrives in the order it was said.
 * A frame in an operation carries a holder (core/frame.h) that the receiver
 * takes over.
 */
#ifndef RR_CONN_XQ_H
#define RR_CONN_XQ_H

#include <stddef.h>
#include <stdint.h>

struct rr_core;
struct rr_frame;
struct io_uring_cqe;

enum rr_xop {
	/* a remote member's core to the home */
	RR_XOP_JOIN = 1, /* idx/gen: the member; a struct rr_xjoin */
	RR_XOP_MSG,	 /* idx/gen: the stub; code: opcode; the payload's bytes */
	RR_XOP_LEFT,	 /* idx/gen: the stub; code: close code; flag: clean */
	RR_XOP_WRITABLE, /* idx/gen: the stub; a uint64_t: bytes still queued */
	/* the home to a remote member's core */
	RR_XOP_UPGRADE,	  /* idx/gen: the member; a struct rr_xupgrade */
	RR_XOP_REPLY,	  /* idx/gen: the member; code: status; a frame or NULL */
	RR_XOP_CLOSE,	  /* idx/gen: the member; code; the reason, NUL-terminated */
	RR_XOP_HOLD,	  /* idx/gen: the member */
	RR_XOP_RELEASE,	  /* idx/gen: the member */
	RR_XOP_WANT,	  /* idx/gen: the member: report when its queue runs low */
	RR_XOP_FRAME_TO,  /* idx/gen: the member; flag: bulk; a frame */
	RR_XOP_FRAME_ALL, /* idx/gen: the member left out (gen 0: none); a struct rr_xall */
};

struct rr_xop_hdr {
	uint8_t op;
	uint8_t flag;
	uint16_t code;
	uint32_t len; /* of the operation, header included; the next starts 8-aligned */
	uint32_t idx, gen;
};

struct rr_xjoin {
	uint64_t accepted_ns;
	uint8_t peer[32]; /* struct rr_addr */
	uint32_t exp_s;
	uint32_t record_len;
	uint8_t record[];
};

struct rr_xupgrade {
	uint32_t stub_idx, stub_gen;
	char accept[29];
	char protocol[]; /* NUL-terminated */
};

struct rr_xall {
	struct rr_frame *f;
	uint8_t route;
	uint8_t room_len;
	char room[];
};

/* Where the operation after h starts in its batch. */
#define RR_XOP_NEXT(off, h) ((off) + (((h)->len + 7u) & ~7u))

struct rr_xbatch {
	struct rr_xbatch *next; /* the receiver's list of early batches; the retry list */
	uint64_t seq;
	uint32_t src, dst;
	uint32_t len, cap;
	uint8_t buf[];
};

/* Per-core state (rr_conns(core)->xq); 0 or -ENOMEM. */
int rr_xq_init(struct rr_core *core);
void rr_xq_fini(struct rr_core *core);
/* Append an operation for core dst with n bytes of payload; returns the
 * payload to fill, or NULL when out of memory (logged). */
void *rr_xq_op(struct rr_core *core, unsigned dst, enum rr_xop op, uint8_t flag, uint16_t code,
	       uint32_t idx, uint32_t gen, size_t n);
/* Append an operation carrying frame f (a holder is taken for dst). */
int rr_xq_frame(struct rr_core *core, unsigned dst, enum rr_xop op, uint8_t flag, uint32_t idx,
		uint32_t gen, struct rr_frame *f);
/* Send every core its batch (the flush step). */
void rr_xq_flush(struct rr_core *core);
/* A batch arrived: the next one to run in order (arrived itself, or an
 * earlier one held back), or NULL; call again with NULL until NULL. */
struct rr_xbatch *rr_xq_ready(struct rr_core *core, struct rr_xbatch *arrived);
/* Free a batch and the holders of the frames in it. */
void rr_xq_discard(struct rr_xbatch *b);
/* The kernel refused a post (completion of kind RR_UD_XQ_FAILED). */
void rr_xq_on_failed(struct rr_core *core, const struct io_uring_cqe *cqe);

#endif

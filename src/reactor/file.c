/* Whole-file reads through io_uring: see file.h. */
#include "reactor/file.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

/* Submit one SQE prepared by the caller and wait for its result. */
static int run_one(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	int rc = io_uring_submit_and_wait(ring, 1);
	if (rc < 0)
		return rc;
	rc = io_uring_peek_cqe(ring, &cqe);
	if (rc < 0)
		return rc;
	rc = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return rc;
}

int rr_file_read(const char *path, size_t max, char **out, size_t *len)
{
	struct io_uring ring;
	struct io_uring_sqe *sqe;
	char *buf = NULL;
	size_t have = 0, cap = 4096;
	int fd, rc;

	rc = io_uring_queue_init(4, &ring, 0);
	if (rc < 0)
		return rc;
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_openat(sqe, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	fd = run_one(&ring);
	if (fd < 0) {
		rc = fd;
		goto out_ring;
	}
	for (;;) {
		if (have + 1 >= cap) {
			if (cap > max) {
				rc = -EFBIG;
				goto out_close;
			}
			cap *= 2;
		}
		char *nb = realloc(buf, cap + 1);
		if (nb == NULL) {
			rc = -ENOMEM;
			goto out_close;
		}
		buf = nb;
		sqe = io_uring_get_sqe(&ring);
		io_uring_prep_read(sqe, fd, buf + have, (unsigned)(cap - have), have);
		rc = run_one(&ring);
		if (rc < 0)
			goto out_close;
		if (rc == 0)
			break;
		have += (size_t)rc;
		if (have > max) {
			rc = -EFBIG;
			goto out_close;
		}
	}
	buf[have] = '\0';
	*out = buf;
	*len = have;
	buf = NULL;
	rc = 0;
out_close:
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_close(sqe, fd);
	run_one(&ring);
out_ring:
	free(buf);
	io_uring_queue_exit(&ring);
	return rc;
}

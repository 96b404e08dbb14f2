/*
 * Whole-file reads through io_uring, for start-up and reload (certificates
 * and keys). Runs on a small private ring of the calling thread: the main
 * thread uses it, never a core.
 */
#ifndef RR_REACTOR_FILE_H
#define RR_REACTOR_FILE_H

#include <stddef.h>

/* Read path (at most max bytes) into a malloc'd buffer (*out, NUL-terminated,
 * *len without the NUL). Returns 0 or -errno; -EFBIG past max. */
int rr_file_read(const char *path, size_t max, char **out, size_t *len);

#endif

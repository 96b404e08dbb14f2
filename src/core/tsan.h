/*
 * Happens-before edges that ThreadSanitizer can't see: an object handed to
 * another thread through io_uring (IORING_OP_MSG_RING carries its address
 * in a CQE) is published by the kernel, not by a lock or an atomic TSan
 * knows. The sender calls RR_HB_RELEASE(obj) before submitting; the
 * receiver calls RR_HB_ACQUIRE(obj) when the CQE arrives. No-ops unless
 * built with -fsanitize=thread.
 */
#ifndef RR_CORE_TSAN_H
#define RR_CORE_TSAN_H

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RR_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(RR_TSAN)
#include <sanitizer/tsan_interface.h>
#define RR_HB_RELEASE(p) __tsan_release((void *)(p))
#define RR_HB_ACQUIRE(p) __tsan_acquire((void *)(p))
#else
#define RR_HB_RELEASE(p) ((void)(p))
#define RR_HB_ACQUIRE(p) ((void)(p))
#endif

#endif

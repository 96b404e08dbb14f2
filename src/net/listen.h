/* Listening sockets: one per core, all bound to the same port with
 * SO_REUSEPORT so the kernel spreads new connections across cores. */
#ifndef RR_NET_LISTEN_H
#define RR_NET_LISTEN_H

#include <stdint.h>

/* Returns a listening socket fd, or -errno with a log line naming the cause. */
int rr_listen_open(const char *bind_addr, uint16_t port, int backlog);

#endif

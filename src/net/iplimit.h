/*
 * Connections per client address, across all cores (--max-connections-per-ip).
 *
 * DESIGN: SO_REUSEPORT spreads one address's connections over every core, so
 * the count can't be per core. A mutex-protected hash table is touched only
 * on accept and on release, never on the data path. IPv4 addresses are kept
 * as IPv4-mapped IPv6 so one key type serves both.
 */
#ifndef RR_NET_IPLIMIT_H
#define RR_NET_IPLIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct rr_ip_entry;

int rr_iplimit_init(uint32_t limit);
void rr_iplimit_free(void);
/* Count a connection from sa. Returns its entry (pass it to release), and
 * sets *over when the address is past the limit (the connection still
 * counts until released). NULL when out of memory or limits are off. */
struct rr_ip_entry *rr_iplimit_acquire(const struct sockaddr *sa, bool *over);
void rr_iplimit_release(struct rr_ip_entry *e);

#endif

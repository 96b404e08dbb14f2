/*
 * A connection's client address, compact (20 bytes instead of a 128-byte
 * sockaddr_storage in every connection): the peer of the accepted socket, or
 * the source a PROXY protocol header gave.
 */
#ifndef RR_NET_ADDR_H
#define RR_NET_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct rr_addr {
	uint8_t ip[16]; /* IPv4 as IPv4-mapped IPv6 */
	uint16_t port;	/* host order */
	uint8_t family; /* AF_INET, AF_INET6, or 0 when unknown */
	uint8_t _pad;
};

/* From an AF_INET or AF_INET6 sockaddr (anything else: unknown). */
void rr_addr_set(struct rr_addr *a, const struct sockaddr *sa);
/* Back to a sockaddr; returns its length, 0 when unknown. */
socklen_t rr_addr_sockaddr(const struct rr_addr *a, struct sockaddr_storage *ss);
/* "192.0.2.1", "2001:db8::1" or "?" into out (at least 46 bytes). */
void rr_addr_format(const struct rr_addr *a, char *out, size_t cap);

#endif

/*
 * PROXY protocol v1 (text) and v2 (binary) header parsing, and the
 * --proxy-from allow-list of the networks a header is accepted from.
 *
 * Pure code: no I/O, no allocation. The parser is incremental in the same
 * way as rr_http_parse(): the caller appends received bytes to one buffer
 * (of at least RR_PROXY_BYTES_MAX bytes) and calls rr_proxy_parse() again
 * with the whole buffer; it answers -EAGAIN until the header is complete.
 * A verdict given on a prefix is the verdict on any longer buffer, so a
 * header fed in any number of pieces gets the same answer as one fed whole,
 * and a hostile prefix is refused at its first wrong byte.
 *
 * The bytes after the header (an HTTP request, a TLS ClientHello) are not
 * looked at: the caller hands buf + consumed to the next layer.
 *
 * Use on a listener with --proxy-protocol (protocol.md, "Behind a load
 * balancer"):
 *   1. on accept, refuse a peer outside --proxy-from
 *      (rr_proxy_from_match() on the accepted address): close, no answer;
 *   2. append received bytes to a buffer of RR_PROXY_BYTES_MAX and call
 *      rr_proxy_parse(); on -EAGAIN wait for more, under the handshake
 *      timer; on -EPROTO/-EMSGSIZE close without an answer;
 *   3. on n > 0: RR_PROXY_ADDR gives the client's address (hdr.src) for
 *      per-IP limits, logs and the handler API; LOCAL and UNKNOWN keep the
 *      accepted peer's. buf[n..) is the start of the TLS handshake or the
 *      HTTP request: hand it to that layer as if just received.
 *
 * Specification: HAProxy's doc/proxy-protocol.txt (versions 1 and 2).
 */
#ifndef RR_PROXY_H
#define RR_PROXY_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "core/limits.h"

enum rr_proxy_kind {
	/* src and dst hold the client's TCP endpoints (sockaddr_in or
	 * sockaddr_in6, ports in network order): the client's address for
	 * per-IP limits, logs and the handler API. */
	RR_PROXY_ADDR = 1,
	/* v2 LOCAL: the balancer speaking for itself (health checks). Use the
	 * real peer's address. */
	RR_PROXY_LOCAL,
	/* v1 "UNKNOWN", or a v2 PROXY command for a family this broker does
	 * not serve (UNSPEC, UDP, unix sockets): the spec says to fall back to
	 * the real peer's address. */
	RR_PROXY_UNKNOWN,
};

struct rr_proxy_hdr {
	uint8_t version; /* 1 or 2 */
	enum rr_proxy_kind kind;
	struct sockaddr_storage src; /* only for RR_PROXY_ADDR; ss_family AF_INET or AF_INET6 */
	struct sockaddr_storage dst; /* only for RR_PROXY_ADDR; the address the client reached */
};

/*
 * Parse a PROXY header at the start of buf[0..len). Returns the header's
 * length in bytes when it is complete and valid (*hdr filled), -EAGAIN when
 * more bytes are needed, -EPROTO when it is malformed, -EMSGSIZE when it
 * passes a limit (a v1 line without CRLF in RR_PROXY_V1_BYTES_MAX bytes, a
 * v2 length over RR_PROXY_V2_LEN_MAX). Both failures mean: close the
 * connection without an answer. No byte at or past
 * min(len, RR_PROXY_BYTES_MAX) is read; *hdr is meaningful only when the
 * return value is positive.
 *
 * v1: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" with single spaces,
 * addresses in the family's textual form (no leading zeros in IPv4, ports
 * 0..65535 without leading zeros), or "PROXY UNKNOWN[ anything]\r\n".
 * v2: the 12-byte signature, version 2, command LOCAL or PROXY, one of the
 * seven family/protocol bytes the spec defines, an address block at least as
 * long as the family's and a sequence of complete TLVs after it. A CRC32C TLV
 * is checked (its value must be 4 bytes and match); other TLVs are skipped.
 * A LOCAL header's address block is ignored, as the spec says.
 */
ssize_t rr_proxy_parse(const uint8_t *buf, size_t len, struct rr_proxy_hdr *hdr);

/* ---- --proxy-from: the networks a PROXY header is accepted from ------ */

struct rr_proxy_cidr {
	sa_family_t family; /* AF_INET or AF_INET6 */
	uint8_t prefix_len; /* 0..32 or 0..128 */
	uint8_t addr[16];   /* network address (4 bytes used for AF_INET) */
};

struct rr_proxy_from {
	unsigned n;
	struct rr_proxy_cidr v[RR_PROXY_FROM_MAX];
};

/* The default of --proxy-from. */
#define RR_PROXY_FROM_DEFAULT "127.0.0.0/8,::1/128"

/*
 * Parse "CIDR[,CIDR...]" into *out: each entry an IPv4 or IPv6 address,
 * optionally followed by "/prefix" (without it, the single host). No spaces,
 * no empty entries. Host bits set past the prefix ("10.1.2.3/8") are refused
 * as a likely typo. Returns 0, or -EINVAL with a message of at most errlen
 * bytes in err (may be NULL) naming the bad entry; *out is undefined then.
 * More than RR_PROXY_FROM_MAX entries is -EINVAL.
 */
int rr_proxy_from_parse(const char *s, struct rr_proxy_from *out, char *err, size_t errlen);

/*
 * Is the peer address sa (AF_INET or AF_INET6; any other family is false) in
 * one of the networks? An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a
 * dual-stack listener reports for an IPv4 peer) is matched as the IPv4
 * address a.b.c.d.
 */
bool rr_proxy_from_match(const struct rr_proxy_from *from, const struct sockaddr *sa);

#endif

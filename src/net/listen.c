/* Listening sockets: see listen.h. */
#include "net/listen.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int rr_listen_open(const char *bind_addr, uint16_t port, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family;
	int one = 1;

	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, bind_addr, &sin->sin_addr) == 1) {
		family = AF_INET;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, bind_addr, &sin6->sin6_addr) == 1) {
		family = AF_INET6;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		len = sizeof(*sin6);
	} else {
		rr_err("--bind: '%s' is not an IPv4 or IPv6 address", bind_addr);
		return -EINVAL;
	}

	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		rr_err("socket: %s", strerror(e));
		return -e;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		int e = errno;
		rr_err("SO_REUSEPORT: %s", strerror(e));
		close(fd);
		return -e;
	}
	/* Small frames are corked by the broker itself: never delay them. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		int e = errno;
		rr_err("bind %s:%u: %s", bind_addr, port, strerror(e));
		close(fd);
		return -e;
	}
	if (listen(fd, backlog) < 0) {
		int e = errno;
		rr_err("listen %s:%u: %s", bind_addr, port, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

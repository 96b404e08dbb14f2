/*
 * sd_notify(3) over a unix datagram socket: see notify.h. The protocol is one
 * datagram per state change to the socket in $NOTIFY_SOCKET; systemd reads
 * the sender's credentials from the socket itself, so nothing else is needed.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/assert.h"
#include "core/notify.h"

int rr_notify(const char *state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *name = getenv("NOTIFY_SOCKET");
	socklen_t salen;
	size_t n;
	ssize_t sent;
	int fd, r = 0;

	rr_assert(state != NULL);
	if (name == NULL)
		return 0;
	if (name[0] == '\0' || state[0] == '\0')
		return -EINVAL;
	if (name[0] != '/' && name[0] != '@')
		return -EAFNOSUPPORT;
	n = strlen(name);
	if (n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, name, n);
	if (name[0] == '@') {
		/* abstract namespace: a leading NUL, and the length says where it ends */
		sa.sun_path[0] = '\0';
		salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	do {
		sent =
		    sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	} while (sent < 0 && errno == EINTR);
	if (sent < 0)
		r = -errno;
	else if ((size_t)sent != strlen(state))
		r = -EMSGSIZE;
	close(fd);
	return r;
}

int rr_notify_ready(void)
{
	char state[96];

	snprintf(state, sizeof(state), "READY=1\nSTATUS=accepting connections\nMAINPID=%ld",
		 (long)getpid());
	return rr_notify(state);
}

int rr_notify_stopping(void)
{
	return rr_notify("STOPPING=1\nSTATUS=draining");
}

int rr_notify_reloading(void)
{
	struct timespec ts;
	char state[96];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(state, sizeof(state), "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull +
		     (unsigned long long)ts.tv_nsec / 1000);
	return rr_notify(state);
}

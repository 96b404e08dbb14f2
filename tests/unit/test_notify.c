/*
 * Unit test for the systemd notifications (src/core/notify.c) against real
 * unix datagram sockets: an abstract one ('@' in $NOTIFY_SOCKET) and one in
 * the file system, as systemd creates it.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/notify.h"
#include "check.h"

/* A bound datagram socket; abstract when name starts with '@'. */
static int listen_on(const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(name);
	socklen_t len;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	memcpy(sa.sun_path, name, n);
	if (name[0] == '@') {
		sa.sun_path[0] = '\0';
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The next datagram, NUL-terminated; "" when there is none. */
static const char *next(int fd)
{
	static char buf[512];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void exercise(int fd)
{
	char pid[64];

	CHECK_EQ(rr_notify_ready(), 0);
	snprintf(pid, sizeof(pid), "\nMAINPID=%ld", (long)getpid());
	{
		const char *m = next(fd);

		CHECK(strncmp(m, "READY=1\n", 8) == 0);
		CHECK(strstr(m, "STATUS=") != NULL);
		CHECK(strstr(m, pid) != NULL);
	}
	CHECK_EQ(rr_notify_reloading(), 0);
	{
		const char *m = next(fd);

		CHECK(strncmp(m, "RELOADING=1\n", 12) == 0);
		CHECK(strstr(m, "\nMONOTONIC_USEC=") != NULL);
	}
	CHECK_EQ(rr_notify_stopping(), 0);
	CHECK(strncmp(next(fd), "STOPPING=1", 10) == 0);
	CHECK_EQ(rr_notify("STATUS=x"), 0);
	CHECK(strcmp(next(fd), "STATUS=x") == 0);
	CHECK(strcmp(next(fd), "") == 0); /* one datagram per call */
}

int main(void)
{
	char abstract[64], path[64], dir[] = "/tmp/rr-notify-XXXXXX";
	int fd;

	/* not under systemd: nothing to do, not an error */
	unsetenv("NOTIFY_SOCKET");
	CHECK_EQ(rr_notify_ready(), 0);
	CHECK_EQ(rr_notify_stopping(), 0);

	snprintf(abstract, sizeof(abstract), "@ringroom-test-notify-%ld", (long)getpid());
	fd = listen_on(abstract);
	CHECK(fd >= 0);
	if (fd >= 0) {
		setenv("NOTIFY_SOCKET", abstract, 1);
		exercise(fd);
		close(fd);
		/* nobody listening any more */
		CHECK_EQ(rr_notify_ready(), -ECONNREFUSED);
	}

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/notify", dir);
	fd = listen_on(path);
	CHECK(fd >= 0);
	if (fd >= 0) {
		setenv("NOTIFY_SOCKET", path, 1);
		exercise(fd);
		close(fd);
		unlink(path);
		CHECK_EQ(rr_notify_ready(), -ENOENT);
	}
	rmdir(dir);

	setenv("NOTIFY_SOCKET", "", 1);
	CHECK_EQ(rr_notify_ready(), -EINVAL);
	setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
	CHECK_EQ(rr_notify_ready(), -EAFNOSUPPORT);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	CHECK_EQ(rr_notify_ready(), -EAFNOSUPPORT);
	{
		char longname[200];

		memset(longname, 'a', sizeof(longname));
		longname[0] = '/';
		longname[sizeof(longname) - 1] = '\0';
		setenv("NOTIFY_SOCKET", longname, 1);
		CHECK_EQ(rr_notify_ready(), -ENAMETOOLONG);
	}
	unsetenv("NOTIFY_SOCKET");
	return check_done();
}

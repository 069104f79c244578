/*
 * notify.c - tell the service manager what the writer is doing (systemd Type=notify):
 * the sd_notify protocol, one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET.
 * The protocol is a stable interface of systemd, documented in sd_notify(3) for
 * reimplementation; doing it here keeps libsystemd out of the writer's dependencies, and
 * Type=notify works wherever the writer is built.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "writer.h"

int writer_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || (path[0] != '/' && path[0] != '@'))
		return 0; /* not under a service manager that listens (or vsock: not ours) */
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	if (n < 2 || n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, n);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0; /* abstract namespace */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ssize_t k = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
			   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
	int rc = k < 0 ? -errno : 0;
	close(fd);
	return rc;
}

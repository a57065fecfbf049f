/*
 * trigger - one-byte wake-up requests (see trigger.h).  Used by cleanup
 * (new mail), the master (periodic wakeups) and "postern flush".
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "trigger.h"

int
trigger_send(const char *path, char request, struct buf *err)
{
	struct sockaddr_un sun;
	int fd, rc = -1;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		buf_printf(err, "%s: socket path too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		buf_printf(err, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		buf_printf(err, "connect to %s: %s", path, strerror(errno));
	else if (send(fd, &request, 1, MSG_NOSIGNAL) != 1)
		buf_printf(err, "write to %s: %s", path, strerror(errno));
	else
		rc = 0;
	close(fd);
	return rc;
}

/*
 * systemd readiness notifications (sd_notify(3)'s protocol) without
 * libsystemd: one datagram of "KEY=VALUE" lines to the unix socket named by
 * $NOTIFY_SOCKET. Under a unit with Type=notify, systemd considers the
 * service started only when READY=1 arrives, and shows STATUS= in
 * `systemctl status`.
 *
 * Each call opens a socket, sends one datagram and closes it: it may block
 * briefly, so call it from the main thread (boot, the signal handler's
 * thread), never on a core. Without $NOTIFY_SOCKET (not started by systemd,
 * or a unit that is not Type=notify) every call does nothing and returns 0.
 */
#ifndef RR_CORE_NOTIFY_H
#define RR_CORE_NOTIFY_H

/*
 * Send state, one or more newline-separated "KEY=VALUE" assignments, to
 * $NOTIFY_SOCKET: an absolute path, or an abstract socket name written with
 * a leading '@'. Returns 0 when sent or when the variable is unset; -EINVAL
 * for an empty value or state, -EAFNOSUPPORT for another form (systemd's
 * "vsock:" addresses are not supported), -ENAMETOOLONG for a name that does
 * not fit a sockaddr_un, or the -errno of socket()/sendto() (-ENOENT,
 * -ECONNREFUSED, ...).
 */
int rr_notify(const char *state);

/* "READY=1" with a STATUS line: start-up is complete (listeners open, cores
 * running) or a reload has finished. */
int rr_notify_ready(void);

/* "STOPPING=1": a drain has begun (SIGTERM). */
int rr_notify_stopping(void);

/* "RELOADING=1" with MONOTONIC_USEC (systemd 253+ checks it for
 * Type=notify-reload; older ones ignore it): a SIGHUP reload has begun. Send
 * rr_notify_ready() when it is done, whether it succeeded or not. */
int rr_notify_reloading(void);

#endif

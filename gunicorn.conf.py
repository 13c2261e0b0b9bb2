"""gunicorn's settings for the portal, read from the working directory (README, "Running in production").

Bind address and worker count stay on the command line. What this file holds is how the server reloads and stops
without losing a request it has accepted. It imports nothing of the portal: the master process would keep that
code across reloads, and the workers it forks would start with the old version.

- SIGHUP (reload after a deploy): new workers start, the old ones finish their current request and exit. The
  listening socket stays open throughout, so requests wait in its queue for the new workers.
- SIGTERM (stop): gunicorn's own graceful stop finishes the requests its workers are serving, but connections the
  kernel has already accepted and queued on the listening socket, waiting for a worker, are reset when the last
  worker closes it: their clients connected and sent a request and get no answer. Under load there are always a
  few. So the stop happens in the other order: the master first makes the listening socket refuse new connections
  without closing it (a socket filter that drops every packet addressed to the listening socket: a client's
  connection attempt goes unanswered and its kernel retries it; connections already queued are sockets of their
  own and keep working), the workers serve everything still queued, and only then exit. A client that tried to
  connect meanwhile is refused once the socket is closed (at its next retry, a second later) and a load balancer
  sends it to another server. Send SIGTERM to the master only (systemd: ``KillMode=mixed``).

The filter is attached only when the master stops for good, never when the socket outlives it (systemd socket
activation, a socket handed over with ``--bind fd://N``, a re-executed master that inherited it with USR2).
Elsewhere than Linux the stop is gunicorn's own.
"""

import ctypes
import errno
import socket
import struct
import sys

from gunicorn.workers.sync import SyncWorker

# How long a stop or a reload waits for the workers to finish what they accepted before killing them. A token
# request takes milliseconds; the slowest pages (exports, bulk uploads) take seconds.
graceful_timeout = 60

SO_ATTACH_FILTER = 26  # Linux <asm-generic/socket.h>; getsockopt() with the same number reads it back (SO_GET_FILTER)
DROP_EVERYTHING = struct.pack("HBBI", 0x06, 0, 0, 0)  # classic BPF, one instruction: BPF_RET|BPF_K, keep 0 bytes


def _filterable(sock: socket.socket) -> bool:
    return sys.platform == "linux" and sock.family in (socket.AF_INET, socket.AF_INET6)


def refuse_new_connections(sock: socket.socket) -> bool:
    """Stop ``sock``, a listening TCP socket, from completing new connections; the ones already queued can still be
    accepted. Returns whether it could."""
    if not _filterable(sock):
        return False
    program = ctypes.create_string_buffer(DROP_EVERYTHING)  # struct sock_filter[1], alive across the call
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", 1, ctypes.addressof(program)))
    return True


def refuses_new_connections(sock: socket.socket) -> bool:
    """Whether ``refuse_new_connections`` was applied to this socket, by any process sharing it."""
    # SO_GET_FILTER copies the filter's instructions and answers how many there are; no filter: none.
    return _filterable(sock) and len(sock.getsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, 64)) > 0


def on_starting(arbiter) -> None:
    """Make the master's graceful stop refuse new connections before it closes its sockets and stops the workers."""
    stop = arbiter.stop

    def stop_after_refusing(graceful: bool = True) -> None:
        inherited = any(isinstance(address, int) for address in arbiter.cfg.address)  # --bind fd://N
        socket_outlives_us = inherited or arbiter.reexec_pid or arbiter.master_pid or arbiter.systemd
        if graceful and not socket_outlives_us:
            for listener in arbiter.LISTENERS:
                refuse_new_connections(listener.sock)
        stop(graceful)

    arbiter.stop = stop_after_refusing


class DrainingSyncWorker(SyncWorker):
    """gunicorn's sync worker that, when its server is stopping (the listening socket refuses new connections),
    serves every connection still queued on the socket before it exits."""

    def run(self) -> None:
        super().run()
        for listener in self.sockets:
            if refuses_new_connections(listener.sock):
                self.serve_queued(listener)

    def serve_queued(self, listener) -> None:
        while True:
            self.notify()
            try:
                self.accept(listener)
            except OSError as error:
                if error.errno == errno.ECONNABORTED:
                    continue
                if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                raise


worker_class = DrainingSyncWorker

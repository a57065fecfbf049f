"""Postern's internal IPC from the outside (doc/ipc.md), for tests that talk
to a service socket directly: attribute lists and a bounded connection."""
import os
import re
import socket
import time

NAME = re.compile(rb"[a-z0-9_]{1,64}")


def encode(pairs):
    """An attribute list: name NUL value NUL ... NUL (doc/ipc.md 2.1)."""
    out = b""
    for name, value in pairs:
        if isinstance(value, str):
            value = value.encode()
        out += name.encode() + b"\0" + value + b"\0"
    return out + b"\0"


class Conn:
    """One connection to a Unix socket, every wait bounded."""

    def __init__(self, path, timeout=15.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        # sun_path holds 108 bytes and test paths can be longer: reach the
        # directory through a descriptor (thread-safe, unlike chdir).
        path = str(path)
        dfd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY)
        try:
            self.sock.connect(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
        finally:
            os.close(dfd)
        self.pending = b""
        self.timeout = timeout

    def _parse(self):
        buf, pos, attrs = self.pending, 0, []
        while True:
            if pos >= len(buf):
                return None
            if buf[pos] == 0:
                self.pending = buf[pos + 1:]
                return attrs
            end = buf.find(b"\0", pos)
            if end < 0:
                return None
            vend = buf.find(b"\0", end + 1)
            if vend < 0:
                return None
            name = buf[pos:end]
            assert NAME.fullmatch(name), name
            attrs.append((name.decode(), buf[end + 1:vend]))
            pos = vend + 1

    def read_list(self, timeout=None):
        """The next list as [(name, value bytes)], or None at end of file."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete list")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                if self.pending:
                    raise EOFError(f"connection closed inside a list: {self.pending!r}")
                return None
            self.pending += data

    def send(self, data):
        self.sock.sendall(data)

    def closed_by_peer(self, timeout=15.0):
        """True when the peer hangs up without sending anything more."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096) == b""
        except ConnectionResetError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

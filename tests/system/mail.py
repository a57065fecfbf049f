"""Helpers for the mail tests: a started instance, raw SMTP, queue inspection."""
import json
import re
import socket
import ssl
import time

from instance import wait_for


def demo_password(inst):
    m = re.search(r"user demo@example\.test, password (\S+)", inst.init_output)
    assert m, inst.init_output
    return m.group(1)


def tls_client_context():
    """Accept the instance's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw:
    """A raw SMTP client: exact bytes in, replies out, with bounded waits."""

    def __init__(self, port, host="127.0.0.1", timeout=20.0, tls=False):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            self.sock = tls_client_context().wrap_socket(self.sock)
        self.pending = b""
        self.timeout = timeout

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no reply")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed; pending %r" % self.pending)
            self.pending += data
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")

    def reply(self):
        """One (possibly multi-line) reply: (code, [lines])."""
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if len(ln) < 4 or ln[3] != "-":
                return int(ln[:3]), lines

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def starttls(self):
        code, _ = self.cmd("STARTTLS")
        assert code == 220
        assert self.pending == b""
        self.sock = tls_client_context().wrap_socket(self.sock)

    def closed(self, timeout=5.0):
        """True when the server closed the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.pending += data
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def queue(inst):
    """Every queued message, from postern queue -j."""
    proc = inst.cmd("queue", "-j")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def queued_ids(inst):
    return [m["queue_id"] for m in queue(inst)]


def cat(inst, qid, *flags):
    proc = inst.cmd("cat", *flags, qid)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def body_of(inst, qid):
    """The stored content, byte-exact (postern cat -b)."""
    proc = inst.cmd("cat", "-hb", qid)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def wait_queued(inst, n, timeout=20):
    return wait_for(lambda: len(queue(inst)) >= n and queue(inst), timeout, what=f"{n} queued messages")


def body_bytes(inst, qid):
    import subprocess

    proc = subprocess.run([inst.postern, "-c", str(inst.dir), "cat", "-hb", qid], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout

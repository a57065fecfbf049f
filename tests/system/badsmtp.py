"""A scripted SMTP server for the smtp client's tests: it records what a
client sends, byte for byte, and misbehaves on request.

Loopback only; one thread per connection; every wait is bounded.

    srv = BadSMTP(replies={"rcpt": lambda s, arg: "550 5.1.1 no" if "bad" in arg else None})
    srv.start()
    ... srv.port, srv.sessions, srv.messages() ...
    srv.stop()

A reply is a str (lines joined with CRLF are sent as they are, CRLF
added), bytes (sent raw), None (the default reply), DROP (close without
a reply), or HANG (say nothing until the client goes away).  replies maps
a stage to a reply or to a function(session, argument) returning one.
Stages: connect, ehlo, helo, starttls, auth, mail, rcpt, data, dot, rset,
noop, quit.  delay maps a stage to seconds to wait before replying.
"""
import base64
import socket
import ssl
import threading
import time

DROP = object()
HANG = object()


class Message:
    def __init__(self, mail):
        self.mail = mail        # the MAIL FROM argument
        self.rcpts = []         # accepted RCPT TO arguments
        self.raw = b""          # DATA as on the wire, up to and including CRLF.CRLF
        self.content = b""      # unstuffed, CRLF line ends, without the final dot


class Session:
    def __init__(self, peer):
        self.peer = peer
        self.commands = []      # every command line, decoded
        self.messages = []
        self.tls = False
        self.auth = None        # the user that authenticated
        self.pipelined = 0      # commands that arrived before the previous reply was sent
        self.closed = False


class BadSMTP:
    def __init__(self, host="127.0.0.1", port=0, *, family=socket.AF_INET, name="bad.test",
                 extensions=("PIPELINING", "SIZE 10240000", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES"),
                 replies=None, delay=None, tls_context=None, inject_after_starttls=b"", tls_garbage=None,
                 auth=None, auth_mechs="PLAIN LOGIN", auth_needs_tls=True, drop_in_data=None,
                 max_line=100000, timeout=30.0):
        self.host, self.family, self.name = host, family, name
        self.extensions = list(extensions)
        self.replies = dict(replies or {})
        self.delay = dict(delay or {})
        self.tls_context = tls_context
        self.inject = inject_after_starttls  # sent with the 220, in the same write
        self.tls_garbage = tls_garbage       # sent a little after the 220 instead of a handshake
        self.auth_users = auth            # {user: password} or None
        self.auth_mechs = auth_mechs
        self.auth_needs_tls = auth_needs_tls
        self.drop_in_data = drop_in_data  # close after this many DATA bytes
        self.max_line = max_line
        self.timeout = timeout
        self.sessions = []
        self.lock = threading.Lock()
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.threads = []

    # ------------------------------------------------------------ control

    def start(self):
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(5)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def messages(self):
        with self.lock:
            return [m for s in self.sessions for m in s.messages]

    def wait_messages(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages()) >= n:
                return self.messages()
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {n} messages; got {len(self.messages())}")

    # ------------------------------------------------------------ serving

    def _accept(self):
        while not self.stopping:
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s = Session(peer)
            with self.lock:
                self.sessions.append(s)
            t = threading.Thread(target=self._serve, args=(conn, s), daemon=True)
            t.start()
            self.threads.append(t)

    def _reply(self, stage, session, arg, default):
        r = self.replies.get(stage)
        if callable(r):
            r = r(session, arg)
        if stage in self.delay:
            time.sleep(self.delay[stage])
        return default if r is None else r

    def _serve(self, conn, s):
        conn.settimeout(self.timeout)
        io = _Conn(conn, self)
        try:
            self._dialogue(io, s)
        except (OSError, EOFError, ssl.SSLError, _Stop):
            pass
        finally:
            s.closed = True
            try:
                io.sock.close()
            except OSError:
                pass

    def _send(self, io, s, reply):
        if reply is DROP:
            raise _Stop()
        if reply is HANG:
            while not self.stopping:
                try:
                    if not io.sock.recv(4096):
                        break
                except socket.timeout:
                    continue
            raise _Stop()
        if io.buffered():
            s.pipelined += 1
        data = reply if isinstance(reply, bytes) else reply.encode() + b"\r\n"
        io.sock.sendall(data)

    def _ehlo_lines(self, s):
        ext = list(self.extensions)
        if self.tls_context is not None and not s.tls:
            ext.append("STARTTLS")
        if self.auth_users is not None and (s.tls or not self.auth_needs_tls):
            ext.append("AUTH " + self.auth_mechs)
        lines = [self.name] + ext
        return "\r\n".join(f"250-{x}" for x in lines[:-1]) + f"\r\n250 {lines[-1]}"

    def _dialogue(self, io, s):
        self._send(io, s, self._reply("connect", s, "", f"220 {self.name} ESMTP badsmtp"))
        msg = None
        while True:
            line = io.line()
            text = line.decode("utf-8", "replace")
            s.commands.append(text)
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self._send(io, s, self._reply("ehlo", s, arg, self._ehlo_lines(s)))
            elif verb == "HELO":
                self._send(io, s, self._reply("helo", s, arg, f"250 {self.name}"))
            elif verb == "STARTTLS" and self.tls_context is not None and not s.tls:
                r = self._reply("starttls", s, arg, "220 2.0.0 Ready to start TLS")
                if isinstance(r, str) and r.startswith("220") and self.inject:
                    r = r.encode() + b"\r\n" + self.inject
                self._send(io, s, r)
                if isinstance(r, (str, bytes)) and r[:3] in ("220", b"220"):
                    if self.tls_garbage is not None:
                        time.sleep(0.3)
                        io.sock.sendall(self.tls_garbage)
                        raise _Stop()
                    io.pending = b""  # what the client sent before TLS is not protected
                    io.sock = self.tls_context.wrap_socket(io.sock, server_side=True)
                    s.tls = True
            elif verb == "AUTH" and self.auth_users is not None:
                self._auth(io, s, arg)
            elif verb == "MAIL":
                r = self._reply("mail", s, arg, "250 2.1.0 Ok")
                if isinstance(r, str) and r.startswith("2"):
                    msg = Message(arg)
                self._send(io, s, r)
            elif verb == "RCPT":
                r = self._reply("rcpt", s, arg, "250 2.1.5 Ok" if msg else "503 5.5.1 need MAIL")
                if msg and isinstance(r, str) and r.startswith("2"):
                    msg.rcpts.append(arg)
                self._send(io, s, r)
            elif verb == "DATA":
                ok = msg is not None and msg.rcpts
                r = self._reply("data", s, arg, "354 End data with <CR><LF>.<CR><LF>" if ok else "554 5.5.1 no rcpts")
                self._send(io, s, r)
                if isinstance(r, str) and r.startswith("354"):
                    self._data(io, s, msg)
                    with self.lock:
                        s.messages.append(msg)
                    msg = None
            elif verb == "RSET":
                msg = None
                self._send(io, s, self._reply("rset", s, arg, "250 2.0.0 Ok"))
            elif verb == "NOOP":
                self._send(io, s, self._reply("noop", s, arg, "250 2.0.0 Ok"))
            elif verb == "QUIT":
                self._send(io, s, self._reply("quit", s, arg, "221 2.0.0 Bye"))
                return
            else:
                self._send(io, s, "502 5.5.2 Error: command not recognized")

    def _data(self, io, s, msg):
        raw = io.until(b"\r\n.\r\n", self.drop_in_data, start_of_line=True)
        msg.raw = raw
        lines = raw[:-3].split(b"\r\n") if raw != b".\r\n" else [b""]
        body = [ln[1:] if ln.startswith(b".") else ln for ln in lines]
        msg.content = b"\r\n".join(body) if raw != b".\r\n" else b""
        self._send(io, s, self._reply("dot", s, msg, "250 2.0.0 Ok: queued as BAD%d" % len(self.messages())))

    def _auth(self, io, s, arg):
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        user = pw = None
        if mech == "PLAIN" and "PLAIN" in self.auth_mechs:
            if not initial:
                self._send(io, s, "334 ")
                initial = io.line().decode()
            try:
                _, user, pw = base64.b64decode(initial).decode().split("\0")
            except Exception:
                pass
        elif mech == "LOGIN" and "LOGIN" in self.auth_mechs:
            self._send(io, s, "334 VXNlcm5hbWU6")
            user = base64.b64decode(io.line()).decode(errors="replace")
            self._send(io, s, "334 UGFzc3dvcmQ6")
            pw = base64.b64decode(io.line()).decode(errors="replace")
        else:
            self._send(io, s, "504 5.5.4 mechanism not available")
            return
        if user is not None and self.auth_users.get(user) == pw:
            s.auth = user
            self._send(io, s, self._reply("auth", s, user, "235 2.7.0 Authentication successful"))
        else:
            self._send(io, s, "535 5.7.8 Error: authentication failed")


class _Stop(Exception):
    pass


class _Conn:
    """Line reading with a pending buffer, so pipelined commands can be seen."""

    def __init__(self, sock, server):
        self.sock = sock
        self.server = server
        self.pending = b""

    def buffered(self):
        return b"\n" in self.pending

    def _more(self):
        while True:
            try:
                data = self.sock.recv(65536)
                break
            except socket.timeout:
                if self.server.stopping:
                    raise _Stop()
                raise
        if not data:
            raise EOFError()
        self.pending += data

    def line(self):
        while b"\n" not in self.pending:
            if len(self.pending) > self.server.max_line:
                raise _Stop()
            self._more()
        line, _, self.pending = self.pending.partition(b"\n")
        return line.rstrip(b"\r")

    def until(self, end, drop_after=None, start_of_line=False):
        # DATA: the terminator may be the very first line (".\r\n").
        if start_of_line and self.pending.startswith(b".\r\n"):
            self.pending = self.pending[3:]
            return b".\r\n"
        while True:
            i = self.pending.find(end)
            if i >= 0:
                out, self.pending = self.pending[:i + len(end)], self.pending[i + len(end):]
                return out
            if drop_after is not None and len(self.pending) >= drop_after:
                raise _Stop()
            self._more()

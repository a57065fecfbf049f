"""pop3d against a real 'postern init' instance: poplib over STLS and
POP3S, raw sockets for exact bytes and hostile input, curl and fetchmail,
and, as root, the identities and chroot of the two parts.

The demo user's Maildir (DIR/mail/example.test/demo/) is filled by the
tests themselves with files named as local(8) names them
("TIME.M<usec>P<pid>Q<n>.host,S=<size>,W=<crlf size>"), owned by the
virtual_uid of the instance.
"""
import hashlib
import hmac
import os
import pathlib
import poplib
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

import ipcwire
from instance import pid_alive, run, wait_for
from mail import Raw, demo_password, tls_client_context

DEMO = "demo@example.test"
_counter = [0]


# ---------------------------------------------------------------- the Maildir


def maildir(inst):
    return inst.dir / "mail" / "example.test" / "demo"


def vmail_ids(inst):
    text = (inst.dir / "main.cf").read_text()
    uid = int(re.search(r"^virtual_uid_maps = static:(\d+)", text, re.M).group(1))
    gid = int(re.search(r"^virtual_gid_maps = static:(\d+)", text, re.M).group(1))
    return uid, gid


def chown(inst, path):
    if os.geteuid() == 0:
        os.chown(path, *vmail_ids(inst))


def make_maildir(inst):
    base = inst.dir / "mail" / "example.test"
    for d in (base, maildir(inst), maildir(inst) / "new", maildir(inst) / "cur", maildir(inst) / "tmp"):
        d.mkdir(mode=0o700, exist_ok=True)
        chown(inst, d)


def crlf(content):
    """The message as POP3 sends it: every LF becomes CRLF (local's ,W= counts the same way)."""
    return content.replace(b"\n", b"\r\n")


def deliver(inst, content, *, with_sizes=True):
    """A message file in new/, named as local names it; returns the base name (the UIDL)."""
    if isinstance(content, str):
        content = content.encode()
    _counter[0] += 1
    now = time.time()
    base = f"{int(now)}.M{int(now * 1e6) % 1000000}P{os.getpid()}Q{_counter[0]}.host"
    name = f"{base},S={len(content)},W={len(crlf(content))}" if with_sizes else base
    tmp = maildir(inst) / "tmp" / name
    tmp.write_bytes(content)
    chown(inst, tmp)
    os.rename(tmp, maildir(inst) / "new" / name)
    return base


def files(inst, sub):
    return sorted(os.listdir(maildir(inst) / sub))


def message(n, body="Hello.\n"):
    return f"From: sender@example.org\nTo: {DEMO}\nSubject: message {n}\n\n{body}"


# ---------------------------------------------------------------- clients


def no_crash(inst):
    log = inst.log()
    killed = getattr(inst, "killed", set())
    bad = [ln for ln in log.splitlines() if "killed by signal" in ln or "exit status" in ln or "panic" in ln]
    bad = [ln for ln in bad if not any(f"pid {pid} killed by signal 9" in ln for pid in killed)]
    assert not bad, "\n".join(bad)


@pytest.fixture
def pop(inst):
    """A started instance with an empty Maildir for the demo user."""
    inst.pop3, inst.pop3s = inst.ports[3], inst.ports[4]
    inst.password = demo_password(inst)
    make_maildir(inst)
    inst.start()
    wait_for(lambda: (inst.dir / "queue" / "private" / "pop3d-mailbox").exists(), what="pop3d-mailbox socket")
    yield inst
    no_crash(inst)


def restart_with(inst, **params):
    inst.conf(**params)
    inst.reload()
    time.sleep(0.5)


def stls(inst):
    p = poplib.POP3("127.0.0.1", inst.pop3, timeout=20)
    p.stls(tls_client_context())
    return p


def pop3s(inst):
    return poplib.POP3_SSL("127.0.0.1", inst.pop3s, timeout=20, context=tls_client_context())


def login(p, inst):
    p.user(DEMO)
    return p.pass_(inst.password)


class Pop(Raw):
    """Raw POP3: exact bytes, one line or one multi-line answer at a time."""

    def __init__(self, inst, tls=False):
        super().__init__(inst.pop3s if tls else inst.pop3, tls=tls)
        self.greeting = self.line()

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def multi(self):
        """Lines of a multi-line answer up to the "." (still stuffed)."""
        lines = []
        while True:
            ln = self.line()
            if ln == ".":
                return lines
            lines.append(ln)

    def raw_until_dot(self):
        """The exact bytes of a multi-line answer's body, its final "." line included."""
        deadline = time.monotonic() + self.timeout
        while b"\r\n.\r\n" not in b"\r\n" + self.pending:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.pending)
            self.pending += data
        i = (b"\r\n" + self.pending).index(b"\r\n.\r\n")
        body, self.pending = self.pending[:i + 3], self.pending[i + 3:]
        return body

    def login(self, inst):
        assert self.cmd(f"USER {DEMO}").startswith("+OK")
        return self.cmd(f"PASS {inst.password}")


def session_pid(inst):
    """The pid of the latest session process, from its log line."""
    found = re.findall(rf"postern/pop3d-mailbox\[(\d+)\]: session: user=<{re.escape(DEMO)}>", inst.log())
    assert found, inst.log()
    return int(found[-1])


def login_pid(inst):
    found = re.findall(rf"/pop3d\[(\d+)\]: login: user=<{re.escape(DEMO)}>", inst.log())
    assert found, inst.log()
    return int(found[-1])


# ---------------------------------------------------------------- capabilities and login


def test_capa_before_and_after_stls(pop):
    p = poplib.POP3("127.0.0.1", pop.pop3, timeout=20)
    assert p.getwelcome().startswith(b"+OK")
    caps = p.capa()
    for cap in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "STLS", "IMPLEMENTATION"):
        assert cap in caps, cap
    assert caps["SASL"] == ["PLAIN"]
    assert caps["IMPLEMENTATION"] == ["Postern"]
    assert "APOP" not in caps
    p.stls(tls_client_context())
    caps = p.capa()
    assert "STLS" not in caps
    assert "USER" in caps and caps["SASL"] == ["PLAIN"]
    login(p, pop)
    caps = p.capa()
    assert "USER" not in caps and "SASL" not in caps and "STLS" not in caps
    assert "UIDL" in caps and "TOP" in caps
    p.quit()


def test_every_command_over_stls(pop):
    m1 = message(1, "First.\n")
    m2 = message(2, "Second line one.\nSecond line two.\nthree\n")
    u1, u2 = deliver(pop, m1), deliver(pop, m2)
    s1, s2 = len(crlf(m1.encode())), len(crlf(m2.encode()))
    p = stls(pop)
    assert login(p, pop).startswith(b"+OK")
    assert p.stat() == (2, s1 + s2)
    resp, lines, _ = p.list()
    assert resp == f"+OK 2 messages ({s1 + s2} octets)".encode()
    assert lines == [f"1 {s1}".encode(), f"2 {s2}".encode()]
    assert p.list(2) == f"+OK 2 {s2}".encode()
    resp, lines, _ = p.uidl()
    assert lines == [f"1 {u1}".encode(), f"2 {u2}".encode()]
    assert p.uidl(1) == f"+OK 1 {u1}".encode()
    resp, lines, octets = p.retr(2)
    assert resp == f"+OK {s2} octets".encode()
    assert b"\r\n".join(lines) + b"\r\n" == crlf(m2.encode())
    resp, lines, _ = p.top(2, 0)
    assert lines == crlf(m2.encode()).split(b"\r\n\r\n")[0].split(b"\r\n") + [b""]
    resp, lines, _ = p.top(2, 1)
    assert lines[-2:] == [b"", b"Second line one."]
    assert p.noop().startswith(b"+OK")
    assert p.dele(1).startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match=r"deleted"):
        p.list(1)
    assert p.stat() == (1, s2)
    assert p.rset().startswith(b"+OK")
    assert p.stat() == (2, s1 + s2)
    with pytest.raises(poplib.error_proto):
        p.retr(3)
    assert p.quit().startswith(b"+OK")
    # RETR 2 moved it to cur/ with the seen flag; 1 (only listed) stays new.
    assert files(pop, "new") == [f"{u1},S={len(m1)},W={s1}"]
    assert files(pop, "cur") == [f"{u2},S={len(m2)},W={s2}:2,S"]


def test_pop3s_and_auth_plain(pop):
    deliver(pop, message(1))
    p = pop3s(pop)
    assert "STLS" not in p.capa()
    resp = p._shortcmd("AUTH PLAIN " + __import__("base64").b64encode(f"\0{DEMO}\0{pop.password}".encode()).decode())
    assert resp.startswith(b"+OK")
    assert p.stat()[0] == 1
    p.quit()
    # Without an initial response: "+ " and the answer on its own line.
    r = Pop(pop, tls=True)
    assert r.cmd("AUTH PLAIN") == "+ "
    import base64

    assert r.cmd(base64.b64encode(f"{DEMO}\0{DEMO}\0{pop.password}".encode()).decode()).startswith("+OK")
    assert r.cmd("STAT").startswith("+OK 1 ")
    assert r.cmd("QUIT").startswith("+OK")
    # "*" cancels; an authorization identity of somebody else is refused.
    r = Pop(pop, tls=True)
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd("*").startswith("-ERR")
    bad = base64.b64encode(f"other@example.test\0{DEMO}\0{pop.password}".encode()).decode()
    assert r.cmd("AUTH PLAIN " + bad).startswith("-ERR [AUTH]")
    assert r.cmd("AUTH CRAM-MD5").startswith("-ERR")
    r.send("AUTH\r\n")
    assert r.line().startswith("+OK")
    assert r.multi() == ["PLAIN"]
    r.close()


def test_wrong_password_and_lockout(pop):
    restart_with(pop, auth_user_failure_limit="2")
    r = Pop(pop)
    assert r.cmd(f"USER {DEMO}").startswith("+OK")
    t0 = time.monotonic()
    assert r.cmd("PASS wrong").startswith("-ERR [AUTH]")
    assert time.monotonic() - t0 >= 0.9  # auth_failure_delay
    assert r.cmd("PASS again").startswith("-ERR")  # USER is needed again
    assert r.cmd(f"USER {DEMO}").startswith("+OK")
    assert r.cmd("PASS wrong").startswith("-ERR [AUTH]")
    # Two failures for the user: even the right password is not checked now.
    assert r.cmd(f"USER {DEMO}").startswith("+OK")
    assert r.cmd(f"PASS {pop.password}").startswith("-ERR [SYS/TEMP]")
    r.close()


# ---------------------------------------------------------------- the maildrop


def test_octets_and_byte_stuffing_exact(pop):
    content = b"From: a@example.org\nSubject: dots\n\n.leading dot\n..two dots\n.\nmixed\r\nend without newline"
    deliver(pop, content)
    r = Pop(pop)
    assert r.login(pop).startswith("+OK")
    size = len(crlf(content))
    assert r.cmd("LIST 1") == f"+OK 1 {size}"
    assert r.cmd("RETR 1") == f"+OK {size} octets"
    body = r.raw_until_dot()
    assert body == (b"From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n...two dots\r\n..\r\n"
                    b"mixed\r\r\nend without newline\r\n.\r\n")
    # Un-stuffed, it is the message with CRLF line ends: the octet count is exact.
    unstuffed = re.sub(rb"(?m)^\.", b"", body[:-3])
    assert len(unstuffed) == size + 2  # the line end added after the last line is not counted
    assert r.cmd("TOP 1 1") == "+OK Top of message follows"
    assert r.raw_until_dot() == b"From: a@example.org\r\nSubject: dots\r\n\r\n..leading dot\r\n.\r\n"
    assert r.cmd("QUIT").startswith("+OK")


def test_size_without_w_field(pop):
    content = b"Subject: no sizes in the name\n\nbody\n"
    deliver(pop, content, with_sizes=False)
    p = stls(pop)
    login(p, pop)
    assert p.stat() == (1, len(crlf(content)))
    assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == crlf(content)
    p.quit()


def test_dele_quit_and_dropped_connection(pop):
    deliver(pop, message(1))
    deliver(pop, message(2))
    # DELE and then the connection drops: nothing changes.
    r = Pop(pop)
    assert r.login(pop).startswith("+OK")
    assert r.cmd("DELE 1").startswith("+OK")
    assert r.cmd("DELE 2").startswith("+OK")
    r.close()
    wait_for(lambda: "nothing changed" in pop.log() or "no update" in pop.log(), what="session end")
    assert len(files(pop, "new")) == 2
    # DELE then QUIT deletes.
    p = stls(pop)
    login(p, pop)
    p.dele(1)
    assert p.quit().startswith(b"+OK")
    assert len(files(pop, "new")) + len(files(pop, "cur")) == 1


def test_uidl_stable_across_sessions_moves_and_restarts(pop):
    bases = [deliver(pop, message(i)) for i in range(3)]
    p = stls(pop)
    login(p, pop)
    first = p.uidl()[1]
    assert first == [f"{i + 1} {b}".encode() for i, b in enumerate(bases)]
    p.retr(1)
    p.retr(3)
    p.quit()
    assert len(files(pop, "cur")) == 2
    p = pop3s(pop)
    login(p, pop)
    assert p.uidl()[1] == first
    p.quit()
    pop.stop()
    pop.start()
    wait_for(lambda: (pop.dir / "queue" / "private" / "pop3d-mailbox").exists(), what="pop3d-mailbox socket")
    p = wait_for(lambda: _try(lambda: stls(pop)), what="pop3 after restart")
    login(p, pop)
    assert p.uidl()[1] == first
    p.quit()


def _try(fn):
    try:
        return fn()
    except OSError:
        return None


def test_mail_during_session_appears_in_next(pop):
    deliver(pop, message(1))
    p = stls(pop)
    login(p, pop)
    assert p.stat()[0] == 1
    deliver(pop, message(2))
    assert p.stat()[0] == 1
    assert len(p.list()[1]) == 1
    p.quit()
    p = stls(pop)
    login(p, pop)
    assert p.stat()[0] == 2
    p.quit()


def test_in_use_and_no_stale_lock_after_kill(pop):
    deliver(pop, message(1))
    first = Pop(pop)
    assert first.login(pop).startswith("+OK")
    second = Pop(pop)
    assert second.login(pop).startswith("-ERR [IN-USE]")
    second.close()
    # kill -9 the session process: the kernel drops the lock with it.
    pid = session_pid(pop)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what="session process gone")
    assert first.closed()
    third = Pop(pop)
    assert third.login(pop).startswith("+OK")
    assert third.cmd("STAT").startswith("+OK 1 ")
    assert third.cmd("QUIT").startswith("+OK")


def test_tls_session_ends_when_login_part_dies(pop):
    deliver(pop, message(1))
    r = Pop(pop, tls=True)
    assert r.login(pop).startswith("+OK")
    assert r.cmd("DELE 1").startswith("+OK")
    lpid, spid = login_pid(pop), session_pid(pop)
    pop.killed = {lpid}
    os.kill(lpid, signal.SIGKILL)
    # The session process sees the relay close: it ends without UPDATE, and lets go of the lock.
    wait_for(lambda: not pid_alive(spid), what="session process gone")
    assert len(files(pop, "new")) == 1
    r2 = Pop(pop, tls=True)
    assert r2.login(pop).startswith("+OK")
    r2.cmd("QUIT")


def test_pipelined_commands_behind_pass_are_kept(pop):
    deliver(pop, message(1))
    for tls in (False, True):
        r = Pop(pop, tls=tls)
        r.send(f"USER {DEMO}\r\nPASS {pop.password}\r\nSTAT\r\nLIST\r\nUIDL 1\r\nQUIT\r\n")
        lines = [r.line() for _ in range(8)]
        assert lines[0].startswith("+OK") and lines[1] == "+OK Logged in", lines
        assert lines[2].startswith("+OK 1 ") and lines[3].startswith("+OK 1 messages")
        assert lines[5] == "." and lines[6].startswith("+OK 1 ") and lines[7].startswith("+OK Bye")
        assert r.closed()


# ---------------------------------------------------------------- TLS rules


def test_stls_injection_is_not_answered(pop):
    r = Pop(pop)
    r.send("STLS\r\nCAPA\r\n")
    assert r.line().startswith("+OK")
    assert r.pending == b""
    r.sock = tls_client_context().wrap_socket(r.sock)
    # Had the CAPA been kept, its answer would come before QUIT's.
    assert r.cmd("QUIT").startswith("+OK Bye")


def test_plaintext_login_refused_outside_mynetworks(pop):
    deliver(pop, message(1))
    restart_with(pop, mynetworks="192.0.2.0/24")
    p = poplib.POP3("127.0.0.1", pop.pop3, timeout=20)
    caps = p.capa()
    assert "USER" not in caps and "SASL" not in caps and "STLS" in caps
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.user(DEMO)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p._shortcmd("AUTH PLAIN AGRlbW8AeA==")
    p.stls(tls_client_context())
    assert "USER" in p.capa()
    login(p, pop)
    assert p.stat()[0] == 1
    p.quit()
    # pop3d_plaintext_auth = yes lets everybody; no refuses loopback too.
    restart_with(pop, pop3d_plaintext_auth="yes")
    p = poplib.POP3("127.0.0.1", pop.pop3, timeout=20)
    login(p, pop)
    p.quit()
    restart_with(pop, mynetworks="127.0.0.0/8", pop3d_plaintext_auth="no")
    p = poplib.POP3("127.0.0.1", pop.pop3, timeout=20)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.user(DEMO)
    p.quit()


def test_stls_twice_and_stls_on_pop3s(pop):
    r = Pop(pop, tls=True)
    assert r.cmd("STLS").startswith("-ERR")
    r.close()
    r = Pop(pop)
    assert r.cmd("STLS x").startswith("-ERR")
    assert r.cmd("STLS").startswith("+OK")
    r.sock = tls_client_context().wrap_socket(r.sock)
    assert r.cmd("STLS").startswith("-ERR")
    r.cmd("QUIT")


# ---------------------------------------------------------------- hostile input


def test_hostile_input(pop):
    deliver(pop, message(1))
    r = Pop(pop)
    assert r.cmd("").startswith("-ERR")
    assert r.cmd("%n%s%s%s").startswith("-ERR")
    assert r.cmd("RETR 1").startswith("-ERR")
    assert r.cmd("APOP demo 0123456789abcdef0123456789abcdef").startswith("-ERR")
    r.send(b"PASS " + b"x" * (100 * 1024) + b"\r\n")
    assert r.line().startswith("-ERR")
    r.send(b"USER \xff\xfe\xc0\xaf@example.test\r\n")
    assert r.line().startswith("+OK")
    assert r.cmd("PASS wrong").startswith("-ERR [AUTH]")
    assert r.login(pop).startswith("+OK")  # 6 errors so far: still below the limit
    assert r.cmd("TOP 1 -1").startswith("-ERR")
    assert r.cmd("TOP 1").startswith("-ERR")
    assert r.cmd("RETR 1 2").startswith("-ERR")
    assert r.cmd("DELE 1").startswith("+OK")
    assert r.cmd("DELE 1").startswith("-ERR")
    assert r.cmd("USER x").startswith("-ERR")
    r.send(b"NOOP\0junk\r\n")
    assert r.line().startswith("-ERR")
    assert r.cmd("RSET").startswith("+OK")
    assert r.cmd("QUIT").startswith("+OK")
    assert len(files(pop, "new")) == 1


def test_error_limit_and_line_limit(pop):
    r = Pop(pop)
    for i in range(9):
        assert r.cmd(f"BOGUS{i}").startswith("-ERR")
    assert "too many errors" in r.cmd("BOGUS")
    assert r.closed()
    # A line longer than the skip bound is not read to its end: the connection goes.
    r = Pop(pop)
    try:
        r.send(b"USER " + b"y" * (3 * 1024 * 1024))
    except OSError:
        pass
    assert r.closed(timeout=10)


def test_timeout(pop):
    deliver(pop, message(1))
    restart_with(pop, pop3d_timeout="2s")
    r = Pop(pop)
    time.sleep(3)
    assert r.closed(timeout=5)
    r = Pop(pop)
    assert r.login(pop).startswith("+OK")
    assert r.cmd("DELE 1").startswith("+OK")
    time.sleep(3)
    assert r.closed(timeout=5)
    assert len(files(pop, "new")) == 1


def test_no_mailbox_yet_is_empty(pop):
    shutil.rmtree(maildir(pop))
    p = stls(pop)
    login(p, pop)
    assert p.stat() == (0, 0)
    p.quit()


# ---------------------------------------------------------------- real clients


def test_curl_pop3s(pop):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (tools/deps)")
    content = message(1, "Line for curl.\n.dotted\n")
    deliver(pop, content)
    proc = run(["curl", "-sk", f"pop3s://127.0.0.1:{pop.pop3s}/1", "-u", f"{DEMO}:{pop.password}"], timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.replace("\r\n", "\n") == content
    proc = run(["curl", "-s", "--ssl-reqd", "-k", f"pop3://127.0.0.1:{pop.pop3}/", "-u", f"{DEMO}:{pop.password}"],
               timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", str(len(crlf(content.encode())))]


def test_fetchmail(pop, tmp_path):
    if shutil.which("fetchmail") is None:
        pytest.skip("fetchmail is not installed (tools/deps)")
    contents = [message(i, f"Body {i}.\n..dots\n") for i in range(3)]
    for c in contents:
        deliver(pop, c)
    out = tmp_path / "out.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f'poll 127.0.0.1 service {pop.pop3s} protocol POP3 uidl\n'
                  f'  user "{DEMO}" password "{pop.password}"\n'
                  f'  ssl no sslcertck no keep fetchall\n'
                  f'  mda "/bin/sh -c \'cat >> {out}\'"\n')
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    proc = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--silent"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = out.read_text()
    for i in range(3):
        assert f"Subject: message {i}" in got
        assert f"Body {i}.\n..dots\n" in got
    assert files(pop, "new") == [] and files(pop, "cur") == []


# ---------------------------------------------------------------- scale


def test_list_10000_messages_quickly(pop):
    new = maildir(pop) / "new"
    uid, gid = vmail_ids(pop)
    body = b"Subject: bulk\n\nx\n"
    w = len(crlf(body))
    for i in range(10000):
        name = new / f"1700000000.M{i}P1Q{i}.host,S={len(body)},W={w}"
        name.write_bytes(body)
        if os.geteuid() == 0:
            os.chown(name, uid, gid)
    r = Pop(pop)
    assert r.login(pop).startswith("+OK")
    t0 = time.monotonic()
    assert r.cmd("LIST") == f"+OK 10000 messages ({10000 * w} octets)"
    lines = r.multi()
    took = time.monotonic() - t0
    assert len(lines) == 10000 and lines[-1] == f"10000 {w}"
    assert took < 5, took
    r.send("UIDL\r\n")
    assert r.line().startswith("+OK")
    assert len(r.multi()) == 10000
    assert r.cmd("QUIT").startswith("+OK")


# ---------------------------------------------------------------- the hand-off protocol from outside


def key(inst):
    return (inst.dir / "queue" / "private" / "auth.key").read_bytes()


def token(k, user, expires, service="pop3d"):
    msg = b"postern-auth-token\0" + b"1\0" + service.encode() + b"\0" + user.encode() + b"\0" + str(expires).encode()
    mac = hmac.new(k, msg, hashlib.sha256).hexdigest()
    return f"1:{expires}:{user.encode().hex()}:{mac}"


def handoff(inst, tok):
    c = ipcwire.Conn(inst.dir / "queue" / "private" / "pop3d-mailbox")
    hello = dict(c.read_list())
    assert hello == {"protocol": b"pop3d-mailbox", "version": b"1"}, hello
    c.send(ipcwire.encode([("token", tok), ("client_addr", "192.0.2.7"), ("tls", "1"), ("mode", "proxy"),
                           ("input", b"STAT\r\n".hex())]))
    return c


def test_mailbox_part_believes_only_tokens(pop):
    deliver(pop, message(1))
    # auth makes the key when it starts: one login makes sure one did.
    p = stls(pop)
    login(p, pop)
    p.quit()
    # A login with a token from auth: the connection becomes the session (proxy mode).
    k = key(pop)
    assert len(k) == 32
    c = handoff(pop, token(k, DEMO, int(time.time()) + 30))
    assert dict(c.read_list()) == {"status": b"0", "reason": b""}
    c.sock.settimeout(10)
    data = c.pending  # what came right behind the reply list
    while data.count(b"\r\n") < 2:
        data += c.sock.recv(4096)
    assert data.startswith(b"+OK Logged in\r\n+OK 1 ")  # the "input" came first
    c.send(b"QUIT\r\n")
    c.close()
    # Forged, expired, for another service: refused, and nothing is served.
    for bad in (token(os.urandom(32), DEMO, int(time.time()) + 30),
                token(k, DEMO, int(time.time()) - 1),
                token(k, DEMO, int(time.time()) + 30, service="smtpd"),
                token(k, DEMO, int(time.time()) + 3600),
                "1:2:3:4"):
        c = handoff(pop, bad)
        assert dict(c.read_list())["status"] == b"1", bad
        assert c.closed_by_peer()
        c.close()
    # A valid token for a user without a mailbox: permanent.
    c = handoff(pop, token(k, "nobody@elsewhere.test", int(time.time()) + 30))
    assert dict(c.read_list())["status"] == b"2"
    c.close()
    assert "login token does not verify" in pop.log()


# ---------------------------------------------------------------- privileges (root only)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_identities_and_chroot(pop):
    m = deliver(pop, message(1))
    net = pwd.getpwnam(pop.cmd("conf", "-h", "network_user").stdout.strip())
    vuid, vgid = vmail_ids(pop)
    r = Pop(pop, tls=True)
    assert r.login(pop).startswith("+OK")
    lpid, spid = login_pid(pop), session_pid(pop)
    st = proc_status(lpid)
    assert st["Uid"] == [str(net.pw_uid)] * 4 and st["Gid"] == [str(net.pw_gid)] * 4
    assert st["Groups"] == []
    assert os.readlink(f"/proc/{lpid}/root") == str(pop.dir / "queue")
    st = proc_status(spid)
    assert st["Uid"] == [str(vuid)] * 4 and st["Gid"] == [str(vgid)] * 4
    assert st["Groups"] == []
    # The session process holds no listening socket and none of the master's pipes.
    for fd in os.listdir(f"/proc/{spid}/fd"):
        assert int(fd) not in (3, 4, 5) or not os.readlink(f"/proc/{spid}/fd/{fd}").startswith("pipe:"), fd
    # The login part's user cannot open a message file (and its chroot does not even contain one).
    path = maildir(pop) / "new" / next(f for f in files(pop, "new") if f.startswith(m))
    child = os.fork()
    if child == 0:
        try:
            os.setgroups([])
            os.setgid(net.pw_gid)
            os.setuid(net.pw_uid)
            open(path, "rb")
            os._exit(1)
        except PermissionError:
            os._exit(0)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.WEXITSTATUS(status) == 0
    assert not str(path).startswith(str(pop.dir / "queue"))
    r.cmd("QUIT")
    # The token key: mail_owner's, 0600.
    st = os.stat(pop.dir / "queue" / "private" / "auth.key")
    owner = pwd.getpwnam(pop.cmd("conf", "-h", "mail_owner").stdout.strip())
    assert st.st_uid == owner.pw_uid and (st.st_mode & 0o777) == 0o600


# ---------------------------------------------------------------- end to end


def test_smtp_in_pop3_out(inst):
    """Mail sent by SMTP, delivered by qmgr and local, read back by POP3 byte for byte."""
    import smtplib

    text = (inst.dir / "master.cf").read_text()
    text = re.sub(r"(?m)^#(qmgr|local)( +unix)", r"\1\2", text)
    inst.write_master_cf(text)
    inst.pop3, inst.pop3s, inst.password = inst.ports[3], inst.ports[4], demo_password(inst)
    inst.start()
    body = "Line one.\r\n.leading dot\r\n..two dots\r\nlast\r\n"
    data = f"From: a@example.org\r\nTo: {DEMO}\r\nSubject: end to end\r\n\r\n{body}"
    with smtplib.SMTP("127.0.0.1", inst.ports[0], timeout=60) as s:
        s.sendmail("a@example.org", [DEMO], data)
    new = maildir(inst) / "new"
    names = wait_for(lambda: new.exists() and os.listdir(new), timeout=30, what="delivery to the Maildir")
    stored = (new / names[0]).read_bytes()
    m = re.search(r",S=(\d+),W=(\d+)", names[0])
    assert m and int(m.group(1)) == len(stored) and int(m.group(2)) == len(crlf(stored))
    r = Pop(inst, tls=True)
    assert r.login(inst).startswith("+OK")
    assert r.cmd("LIST 1") == f"+OK 1 {len(crlf(stored))}"
    assert r.cmd("RETR 1") == f"+OK {len(crlf(stored))} octets"
    got = r.raw_until_dot()
    assert re.sub(rb"(?m)^\.", b"", got[:-3]) == crlf(stored)
    assert got.endswith(b"Line one.\r\n..leading dot\r\n...two dots\r\nlast\r\n.\r\n")
    assert r.cmd("QUIT").startswith("+OK")
    proc = run(["curl", "-sk", f"pop3s://127.0.0.1:{inst.pop3s}/1", "-u", f"{DEMO}:{inst.password}"], timeout=30)
    assert proc.returncode == 0 and "Subject: end to end" in proc.stdout and ".leading dot" in proc.stdout
    no_crash(inst)

"""auth and anvil, as smtpd and pop3d use them: Python clients that speak
the protocols of doc/ipc.md (sections 8.4 and 8.5) over the instance's
queue/private sockets, against a real master running the real daemons.

What is checked is what a client sees: results, the failure delay, the
lockout and its end, temporary failures, and that neither daemon falls
over on hostile input (a following good request still works, nothing
crashed in the log).
"""
import concurrent.futures
import os
import pwd
import re
import socket
import subprocess
import time

import pytest

import ipcwire
from instance import pid_alive, wait_for
from ipcwire import encode

MASTER_CF = "auth unix - - n - - auth\nanvil unix - - n - 1 anvil\n"
DELAY = 1.0  # auth_failure_delay in these tests
LOCKOUT = 3.0  # auth_lockout_time in these tests
USER = "demo@example.test"


# ---------------------------------------------------------------- the wire


class Conn(ipcwire.Conn):
    """A connection whose lists have text values."""

    def read_list(self, timeout=None):
        attrs = super().read_list(timeout)
        return None if attrs is None else [(k, v.decode(errors="replace")) for k, v in attrs]

    def ask(self, pairs, timeout=None):
        self.send(encode(pairs))
        return self.read_list(timeout)


def private(inst, name):
    return inst.dir / "queue" / "private" / name


def auth_conn(inst):
    """A greeted connection; like auth_check(), retries when auth closes before its greeting."""
    for _ in range(3):
        c = Conn(private(inst, "auth"), timeout=DELAY + 30)
        hello = c.read_list()
        if hello is not None:
            assert dict(hello) == {"protocol": "auth", "version": "1"}, hello
            return c
        c.close()
    raise AssertionError("auth closed three connections before greeting")


def auth(inst, user, password, addr="127.0.0.1", service="smtpd"):
    """One check: (result dict, seconds the reply took)."""
    c = auth_conn(inst)
    try:
        t0 = time.monotonic()
        reply = c.ask([("service", service), ("user", user), ("password", password), ("client_addr", addr)])
        took = time.monotonic() - t0
        assert reply is not None, "auth closed the connection without a reply"
        return dict(reply), took
    finally:
        c.close()


def anvil_conn(inst):
    c = Conn(private(inst, "anvil"))
    hello = dict(c.read_list())
    assert hello == {"protocol": "anvil", "version": "1"}, hello
    return c


def anvil(c, request, ident):
    reply = c.ask([("request", request), ("ident", ident)])
    assert reply is not None, f"anvil closed the connection on {request} {ident}"
    return dict(reply)


# ---------------------------------------------------------------- fixtures


def demo_password(inst):
    m = re.search(r"user \S+, password (\S+)", inst.init_output)
    assert m, inst.init_output
    return m.group(1)


def daemon_pids(inst, name):
    """Pids of the master's children running daemon `name` (process title "NAME: SERVICE TYPE")."""
    out = []
    for pid in inst.children():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith(f"{name}:"):
            out.append(pid)
    return out


def no_crash(inst):
    log = inst.log()
    bad = [ln for ln in log.splitlines() if "killed by signal" in ln or "exit status" in ln or "panic" in ln]
    assert not bad, "\n".join(bad)


@pytest.fixture
def running(inst):
    """The instance with auth and anvil; test timings (delay 1s, lockout 3s)."""
    inst.write_master_cf(MASTER_CF)
    inst.conf(auth_failure_delay="1s", auth_lockout_time="3s")
    inst.start()
    wait_for(lambda: private(inst, "auth").exists() and private(inst, "anvil").exists(), what="service sockets")
    yield inst
    no_crash(inst)


def fail_many(inst, attempts):
    """Run (user, password, addr) attempts at once; their results."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        return list(pool.map(lambda a: auth(inst, *a)[0]["result"], attempts))


# ---------------------------------------------------------------- auth


def test_right_password(running):
    pw = demo_password(running)
    r, took = auth(running, USER, pw)
    assert r == {"result": "ok", "user": USER, "reason": ""}
    assert took < DELAY
    # The table folds keys; the answer is the table's key.
    r, _ = auth(running, "Demo@EXAMPLE.test", pw, service="pop3d")
    assert r["result"] == "ok" and r["user"] == USER
    log = running.log()
    assert f"login ok user={USER} client=127.0.0.1 service=smtpd" in log
    assert pw not in log


def test_login_token(running):
    """want_token=1: an ok carries a token (doc/ipc.md 8.6.1) made with private/auth.key."""
    import hashlib
    import hmac

    pw = demo_password(running)
    c = auth_conn(running)
    try:
        reply = dict(c.ask([("service", "pop3d"), ("user", "DEMO@example.test"), ("password", pw),
                            ("client_addr", "127.0.0.1"), ("want_token", "1")]))
    finally:
        c.close()
    assert reply["result"] == "ok" and reply["user"] == USER
    version, expires, hexuser, mac = reply["token"].split(":")
    assert version == "1" and bytes.fromhex(hexuser).decode() == USER
    assert 50 <= int(expires) - time.time() <= 61
    keyfile = private(running, "auth.key")
    st = os.stat(keyfile)
    assert st.st_size == 32 and (st.st_mode & 0o777) == 0o600
    owner = pwd.getpwnam(running.cmd("conf", "-h", "mail_owner").stdout.strip()).pw_uid if os.geteuid() == 0 \
        else os.geteuid()
    assert st.st_uid == owner
    key = keyfile.read_bytes()
    msg = b"postern-auth-token\0" + b"1\0" + b"pop3d\0" + USER.encode() + b"\0" + expires.encode()
    assert hmac.compare_digest(hmac.new(key, msg, hashlib.sha256).hexdigest(), mac)
    # Without want_token, or with 0: no token; a wrong password: no token either.
    r, _ = auth(running, USER, pw, service="pop3d")
    assert "token" not in r
    c = auth_conn(running)
    try:
        reply = dict(c.ask([("service", "pop3d"), ("user", USER), ("password", "wrong"),
                            ("client_addr", "127.0.0.1"), ("want_token", "1")]))
        assert reply["result"] == "fail" and "token" not in reply
    finally:
        c.close()
    c = auth_conn(running)
    try:
        reply = dict(c.ask([("service", "pop3d"), ("user", USER), ("password", pw),
                            ("client_addr", "127.0.0.1"), ("want_token", "yes")]))
        assert reply == {"result": "tempfail", "reason": "protocol error"}
    finally:
        c.close()
    # Later auth processes use the one key: it is not made again.
    assert keyfile.read_bytes() == key and os.stat(keyfile).st_ino == st.st_ino
    assert pw not in running.log()


def test_wrong_password_and_unknown_user_look_alike(running):
    r, t_wrong = auth(running, USER, "not-the-password")
    assert r["result"] == "fail"
    assert "user" not in r
    assert t_wrong >= DELAY
    r2, t_unknown = auth(running, "nobody@example.test", "not-the-password")
    assert r2 == r
    assert t_unknown >= DELAY
    # The same crypt work either way: no timing tells which users exist.
    assert abs(t_unknown - t_wrong) < 0.5, (t_wrong, t_unknown)
    log = running.log()
    assert f"authentication failed for user={USER} client=127.0.0.1" in log
    assert "not-the-password" not in log


def test_empty_values_fail(running):
    for user, pw in [(USER, ""), ("", "x")]:
        r, took = auth(running, user, pw)
        assert r["result"] == "fail", (user, pw, r)
        assert took >= DELAY


def test_client_address_lockout(running):
    pw = demo_password(running)
    # Ten failures (auth_client_failure_limit) from one address, each for
    # another unknown user so that no user counter reaches its limit.
    results = fail_many(running, [(f"guess{i}@example.test", "x", "192.0.2.7") for i in range(10)])
    assert results == ["fail"] * 10
    t_last = time.monotonic()
    # Now even the right password is refused from that address, at once.
    r, took = auth(running, USER, pw, addr="192.0.2.7")
    assert r["result"] == "locked", r
    assert took < DELAY
    r, _ = auth(running, "guess0@example.test", "x", addr="192.0.2.7")
    assert r["result"] == "locked"
    # Other addresses are not affected.
    r, _ = auth(running, USER, pw, addr="192.0.2.8")
    assert r["result"] == "ok"
    # A login that works does not reset the address counter.
    r, _ = auth(running, USER, pw, addr="192.0.2.7")
    assert r["result"] == "locked"
    assert "recent failures from the client address" in running.log()
    # auth_lockout_time after the last failure the address may try again.
    time.sleep(max(0.0, LOCKOUT + 0.3 - (time.monotonic() - t_last)))
    r, _ = auth(running, USER, pw, addr="192.0.2.7")
    assert r["result"] == "ok", r


def test_user_lockout_from_many_addresses(running):
    pw = demo_password(running)
    results = fail_many(running, [("Demo@Example.TEST", "x", f"198.51.100.{i}") for i in range(1, 11)])
    assert results == ["fail"] * 10
    t_last = time.monotonic()
    r, took = auth(running, USER, pw, addr="203.0.113.1")
    assert r["result"] == "locked", r
    assert took < DELAY
    # Another user from the same new address is checked as usual.
    r, _ = auth(running, "other@example.test", "x", addr="203.0.113.1")
    assert r["result"] == "fail"
    assert "recent failures for the user" in running.log()
    time.sleep(max(0.0, LOCKOUT + 0.3 - (time.monotonic() - t_last)))
    r, _ = auth(running, USER, pw, addr="203.0.113.1")
    assert r["result"] == "ok", r
    # Success resets the user's counter: one failure later it is not locked.
    r, _ = auth(running, USER, "x", addr="203.0.113.2")
    assert r["result"] == "fail"
    r, _ = auth(running, USER, pw, addr="203.0.113.2")
    assert r["result"] == "ok"


def test_missing_table_is_a_temporary_failure(inst):
    inst.write_master_cf(MASTER_CF)
    inst.conf(auth_failure_delay="1s", auth_passwd_maps=f"hash:{inst.dir}/no-such-table")
    inst.start()
    wait_for(lambda: private(inst, "auth").exists(), what="auth socket")
    r, _ = auth(inst, USER, demo_password(inst))
    assert r["result"] == "tempfail", r
    assert "no-such-table" in inst.log()
    no_crash(inst)


def test_rebuilt_table_is_read_afresh(running):
    old = demo_password(running)
    assert auth(running, USER, old)[0]["result"] == "ok"
    new = "a-new-password-42"
    proc = subprocess.run(
        [running.postern, "hash-password"], input=new + "\n", capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    source = running.dir / "passwd"
    source.write_text(f"{USER} {proc.stdout.strip()}\n")
    time.sleep(1.1)  # tables are checked for changes once a second
    running.cmd("map", f"hash:{source}", check=True)
    # The process that held the old table (root-only: it could not reopen
    # it) exits before greeting, and a fresh one answers.
    r, _ = auth(running, USER, new)
    assert r["result"] == "ok", r
    assert auth(running, USER, old)[0]["result"] == "fail"
    assert "auth_passwd_maps changed" in running.log()


def test_hostile_requests_do_not_hurt(running):
    pw = demo_password(running)
    # Framing errors: the connection is closed without a reply.
    for junk in [
        b"\xff\xfe\xfdgarbage\0\0",  # invalid name bytes
        b"User\0x\0\0",  # upper case name
        encode([("service", "smtpd"), ("user", USER), ("password", "p" * 600), ("client_addr", "1.2.3.4")]),
        b"a" * 100 + b"\0x\0\0",  # name over 64 bytes
        encode([(f"n{i}", "v") for i in range(20)]),  # too many attributes
    ]:
        c = auth_conn(running)
        c.send(junk)
        assert c.closed_by_peer(), junk[:40]
        c.close()
    # Well framed but not a valid request: a temporary failure, then close.
    for pairs in [
        [("service", "smtpd"), ("user", USER), ("password", pw)],  # no client_addr
        [("service", "smtpd"), ("user", USER), ("password", pw), ("client_addr", "1.2.3.4"), ("extra", "1")],
        [("service", "smtpd"), ("user", USER), ("password", pw), ("client_addr", "bad addr")],
        [("service", ""), ("user", USER), ("password", pw), ("client_addr", "1.2.3.4")],
    ]:
        c = auth_conn(running)
        r = dict(c.ask(pairs))
        assert r["result"] == "tempfail" and r["reason"] == "protocol error", (pairs, r)
        assert c.closed_by_peer()
        c.close()
    # An over-long user name is simply wrong.
    r, _ = auth(running, "u" * 300 + "@example.test", pw)
    assert r["result"] == "fail"
    # A client that says nothing holds one process; others are served.
    silent = auth_conn(running)
    half = auth_conn(running)
    half.send(b"service\0smtpd\0user\0")
    r, _ = auth(running, USER, pw)
    assert r["result"] == "ok"
    silent.close()
    half.close()
    log = running.log()
    assert "bad request" in log
    assert pw not in log


# ---------------------------------------------------------------- anvil


def test_anvil_connection_counts(running):
    a = anvil_conn(running)
    b = anvil_conn(running)
    ident = "smtpd:192.0.2.1"
    assert anvil(a, "connect", ident) == {"status": "0", "count": "1", "rate": "1"}
    assert anvil(a, "connect", ident) == {"status": "0", "count": "2", "rate": "2"}
    assert anvil(b, "connect", ident) == {"status": "0", "count": "3", "rate": "3"}
    assert anvil(b, "connect", "smtpd:192.0.2.2") == {"status": "0", "count": "1", "rate": "1"}
    assert anvil(b, "disconnect", ident) == {"status": "0", "count": "2"}
    # A connection cannot release what another one holds.
    assert anvil(b, "disconnect", ident) == {"status": "0", "count": "2"}
    assert anvil(b, "connect", ident)["count"] == "3"
    # A client that goes away releases everything it held.  A connection
    # that holds nothing for the ident can watch the count go down.
    a.close()
    probe = anvil_conn(running)
    wait_for(lambda: anvil(probe, "disconnect", ident)["count"] == "1", 5, what="counts released")
    assert anvil(b, "connect", ident) == {"status": "0", "count": "2", "rate": "5"}
    probe.close()
    b.close()
    c = anvil_conn(running)
    assert anvil(c, "connect", ident)["count"] == "1"
    assert anvil(c, "connect", "smtpd:192.0.2.2")["count"] == "1"
    c.close()


def test_anvil_rate_window(inst):
    inst.write_master_cf(MASTER_CF)
    inst.conf(anvil_rate_time_unit="2s")
    inst.start()
    wait_for(lambda: private(inst, "anvil").exists(), what="anvil socket")
    c = anvil_conn(inst)
    for i in range(1, 4):
        assert anvil(c, "connect", "smtpd:192.0.2.9")["rate"] == str(i)
        assert anvil(c, "disconnect", "smtpd:192.0.2.9")["count"] == "0"
    time.sleep(2.2)
    assert anvil(c, "connect", "smtpd:192.0.2.9") == {"status": "0", "count": "1", "rate": "1"}
    c.close()
    no_crash(inst)


def test_anvil_failure_counters(running):
    c = anvil_conn(running)
    assert anvil(c, "auth_count", "user:x@example.test") == {"status": "0", "count": "0"}
    assert anvil(c, "auth_fail", "user:x@example.test") == {"status": "0", "count": "1"}
    assert anvil(c, "auth_fail", "user:x@example.test") == {"status": "0", "count": "2"}
    # Counters are shared by all clients and survive the one that made them.
    c.close()
    c = anvil_conn(running)
    assert anvil(c, "auth_count", "user:x@example.test")["count"] == "2"
    assert anvil(c, "auth_reset", "user:x@example.test") == {"status": "0"}
    assert anvil(c, "auth_count", "user:x@example.test")["count"] == "0"
    # They expire auth_lockout_time after the last failure.
    assert anvil(c, "auth_fail", "addr:192.0.2.3")["count"] == "1"
    time.sleep(LOCKOUT / 2)
    assert anvil(c, "auth_fail", "addr:192.0.2.3")["count"] == "2"
    time.sleep(LOCKOUT / 2 + 0.3)
    assert anvil(c, "auth_count", "addr:192.0.2.3")["count"] == "2"
    time.sleep(LOCKOUT / 2)
    assert anvil(c, "auth_count", "addr:192.0.2.3")["count"] == "0"
    c.close()


def test_anvil_hostile_clients(running):
    first = anvil_conn(running)  # the master starts anvil on demand
    pids = daemon_pids(running, "anvil")
    assert len(pids) == 1
    # Refused requests: status 1 with a reason, then the connection closes.
    for pairs in [
        [("request", "explode"), ("ident", "x")],
        [("request", "connect")],
        [("request", "connect"), ("ident", "x"), ("extra", "1")],
        [("request", "connect"), ("ident", "")],
    ]:
        c = anvil_conn(running)
        r = dict(c.ask(pairs))
        assert r["status"] == "1" and r["reason"], (pairs, r)
        assert c.closed_by_peer()
        c.close()
    # Broken framing: closed without a reply.
    for junk in [b"Request\0connect\0\0", b"request\0" + b"x" * 600 + b"\0\0", b"\x01" * 9000]:
        c = anvil_conn(running)
        c.send(junk)
        assert c.closed_by_peer(), junk[:40]
        c.close()
    # A slow client does not hold up the others: half a request waits...
    slow = anvil_conn(running)
    slow.send(b"request\0connect\0ide")
    fast = anvil_conn(running)
    assert anvil(fast, "connect", "smtpd:192.0.2.5")["count"] == "1"
    # ...and is answered once it is whole; several requests in one write too.
    slow.send(b"nt\0smtpd:192.0.2.5\0\0" + encode([("request", "connect"), ("ident", "smtpd:192.0.2.5")]))
    assert dict(slow.read_list())["count"] == "2"
    assert dict(slow.read_list())["count"] == "3"
    slow.close()
    fast.close()
    assert anvil(first, "auth_count", "addr:192.0.2.5")["status"] == "0"
    first.close()
    assert daemon_pids(running, "anvil") == pids
    assert pid_alive(pids[0])
    assert "malformed request" in running.log()


def test_auth_carries_on_without_anvil(inst):
    inst.write_master_cf("auth unix - - n - - auth\n")
    inst.conf(auth_failure_delay="1s")
    inst.start()
    wait_for(lambda: private(inst, "auth").exists(), what="auth socket")
    r, _ = auth(inst, USER, "x")
    assert r["result"] == "fail"
    r, _ = auth(inst, USER, demo_password(inst))
    assert r["result"] == "ok"
    assert "without connection and login limits" in inst.log()
    no_crash(inst)


NETWORK_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(15)
try:
    s.connect(sys.argv[1])
except PermissionError:
    sys.exit(77)
def read_list():
    data = b""
    while not (data.endswith(b"\0\0") and data.count(b"\0") % 2 == 1):
        chunk = s.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data
def ask(req, ident):
    s.sendall(b"request\0" + req + b"\0ident\0" + ident + b"\0\0")
    return read_list()
read_list()
print(repr(ask(b"connect", b"smtpd:192.0.2.77")))
print(repr(ask(b"auth_reset", b"user:" + sys.argv[2].encode())))
print(repr(s.recv(100)))
"""


def test_anvil_failure_counters_only_for_auth(running):
    """smtpd runs as the network user: it may count connections, not touch the lockout."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as the network user")
    net = running.cmd("conf", "network_user", check=True).stdout.split("=", 1)[1].strip()
    c = anvil_conn(running)
    assert anvil(c, "auth_fail", "user:" + USER)["count"] == "1"
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", NETWORK_CLIENT, str(private(running, "anvil")), USER],
        user=net,
        group=pwd.getpwnam(net).pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode == 77:
        pytest.skip(f"private/anvil is not reachable by {net} (master socket permissions)")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == repr(b"status\x000\x00count\x001\x00rate\x001\x00\x00"), lines
    assert lines[1].startswith(repr(b"status\x001\x00")[:-1]), lines
    assert lines[2] == repr(b""), lines
    # The counter is untouched.
    assert anvil(c, "auth_count", "user:" + USER)["count"] == "1"
    c.close()

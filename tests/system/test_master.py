"""The master and the server skeleton, driven through a test service (echod).

Every test starts a real master from a 'postern init' instance, talks to
its children over loopback TCP, and checks what an admin would see: the
processes in /proc, the replies, the log.
"""
import os
import re
import signal
import socket
import time

import pytest

from instance import free_ports, pid_alive, run, wait_for

MASTER_CF = "127.0.0.1:{port} inet n - {chroot} - {maxproc} {echod}{args}\n"


def echo_service(inst, port=None, maxproc=3, args="", chroot="n", extra=""):
    port = port or free_ports(1)[0]
    inst.write_master_cf(
        MASTER_CF.format(port=port, maxproc=maxproc, echod=inst.echod(), args=args, chroot=chroot) + extra
    )
    return port


class Client:
    """A line-oriented client of echod with bounded waits (no makefile():
    a timed-out file object is unusable and keeps the socket open)."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.pending = b""

    def readline(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line")
            self.sock.settimeout(left)
            data = self.sock.recv(4096)
            if not data:
                raise EOFError("connection closed")
            self.pending += data
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode()

    def greeting(self, timeout=10.0):
        line = self.readline(timeout)
        assert line.startswith("hello "), line
        return int(line.split()[2])

    def send(self, text):
        self.sock.sendall(text.encode() + b"\n")

    def ask(self, text, timeout=10.0):
        self.send(text)
        return self.readline(timeout).strip()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def test_start_status_stop_leaves_no_process(inst):
    port = echo_service(inst)
    inst.start()
    master = inst.master_pid()
    assert master and pid_alive(master)
    c = Client(port)
    child = c.greeting()
    assert c.ask("ping") == "echo: ping"
    assert child in inst.children()
    status = inst.cmd("status")
    assert status.returncode == 0
    assert f"pid {master}" in status.stdout
    assert re.search(rf"127\.0\.0\.1:{port}\s+inet\s+3\s+1", status.stdout), status.stdout
    c.close()
    assert inst.stop().returncode == 0
    assert not pid_alive(master)
    wait_for(lambda: not pid_alive(child), 5, what="child exit")
    assert inst.cmd("status").returncode == 1
    log = inst.log()
    assert "daemon started" in log and "terminating on signal 15" in log


def test_stop_waits_for_busy_child_then_kills(inst):
    port = echo_service(inst)
    inst.conf(master_stop_timeout="1s")
    inst.start()
    c = Client(port)
    child = c.greeting()
    t0 = time.monotonic()
    assert inst.stop().returncode == 0
    assert time.monotonic() - t0 < 10
    assert not pid_alive(child)
    c.close()


def test_maxproc_honoured_extra_clients_wait(inst):
    port = echo_service(inst, maxproc=3)
    inst.start()
    clients = [Client(port) for _ in range(6)]
    served = [c.greeting() for c in clients[:3]]
    assert len(set(served)) == 3
    # The other three wait in the listen queue: connected, not refused, not greeted.
    for c in clients[3:]:
        with pytest.raises(socket.timeout):
            c.greeting(timeout=1.0)
    assert len(inst.children()) == 3
    for c in clients[:3]:
        c.close()
    # No greeting was lost: the waiting clients now get theirs.
    for c in clients[3:]:
        c.greeting()
    assert len(inst.children()) <= 3
    for c in clients[3:]:
        c.close()


def test_killed_child_is_replaced(inst):
    port = echo_service(inst, maxproc=1)
    inst.start()
    c = Client(port)
    busy = c.greeting()
    os.kill(busy, signal.SIGKILL)
    c.close()
    wait_for(lambda: not pid_alive(busy), 5, what="killed child to go")
    c2 = Client(port)
    fresh = c2.greeting()
    assert fresh != busy
    assert c2.ask("x") == "echo: x"
    # An idle child killed from outside is replaced too (no throttle for SIGKILL).
    c2.close()
    wait_for(lambda: fresh in inst.children(), 5)
    os.kill(fresh, signal.SIGKILL)
    wait_for(lambda: not pid_alive(fresh), 5)
    c3 = Client(port)
    assert c3.greeting() not in (busy, fresh)
    c3.close()
    assert f"pid {busy} killed by signal 9" in inst.log()


def test_crash_is_logged_and_replaced(inst):
    port = echo_service(inst, maxproc=1)
    inst.start()
    c = Client(port)
    first = c.greeting()
    c.send("crash")
    wait_for(lambda: not pid_alive(first), 5)
    c.close()
    c2 = Client(port)
    assert c2.greeting() != first
    c2.close()
    assert re.search(rf"pid {first} killed by signal 6", inst.log())


def test_service_dying_at_start_is_throttled(inst):
    port = echo_service(inst, args=" fail-start")
    inst.start()
    socks = []
    t0 = time.monotonic()
    # Ten seconds of clients knocking: a fork storm would start a process per try.
    while time.monotonic() - t0 < 10:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
        time.sleep(0.2)
    for s in socks:
        s.close()
    log = inst.log()
    starts = log.count("failing at start, as asked")
    assert 1 <= starts <= 2, log
    assert "throttling for 60 seconds" in log


def test_config_error_reported_once(inst):
    port = echo_service(inst, args=" config-error")
    inst.start()
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(0.3)
        s.close()
    log = inst.log()
    assert log.count("a configuration error, as asked") == 1, log
    assert log.count("service disabled until") == 1
    assert inst.cmd("status").returncode == 0  # the master itself keeps running


def test_reload_changes_maxproc_while_client_stays(inst):
    port = echo_service(inst, maxproc=1)
    inst.start()
    a = Client(port)
    old = a.greeting()
    b = Client(port)
    with pytest.raises(socket.timeout):
        b.greeting(timeout=1.0)
    echo_service(inst, port=port, maxproc=2)
    inst.reload()
    # b is served by a new-generation child while a keeps its old one.
    new = b.greeting()
    assert new != old
    assert a.ask("still there") == "echo: still there"
    assert "reload -- version" in inst.log()
    # The old child finishes its client, then exits; the new one stays.
    a.close()
    wait_for(lambda: not pid_alive(old), 10, what="old child to retire")
    assert pid_alive(new)
    b.close()


def test_reload_never_refuses_a_connection(inst):
    port = echo_service(inst, maxproc=5)
    inst.start()
    refused = 0
    for i in range(5):
        inst.reload()
        for _ in range(10):
            try:
                c = Client(port)
                c.greeting()
                c.close()
            except ConnectionRefusedError:
                refused += 1
    assert refused == 0


def test_reload_with_broken_config_keeps_running(inst):
    port = echo_service(inst)
    inst.start()
    master = inst.master_pid()
    with open(inst.dir / "main.cf", "a") as f:
        f.write("max_use = -5\n")
    proc = inst.cmd("reload")
    assert proc.returncode == 1
    assert "max_use" in proc.stderr and "main.cf:" in proc.stderr
    # Signal it anyway, as an admin might with kill -HUP: still no harm.
    os.kill(master, signal.SIGHUP)
    time.sleep(0.5)
    c = Client(port)
    c.greeting()
    c.close()
    assert pid_alive(master)
    wait_for(lambda: "keeping the running configuration" in inst.log(), 5)


def test_two_masters_refused(inst):
    echo_service(inst)
    inst.start()
    master = inst.master_pid()
    proc = inst.cmd("start")
    assert proc.returncode == 1 and "already running" in proc.stderr
    # Even the master program itself, bypassing the command, refuses.
    direct = os.path.join(inst.build, "libexec", "master")
    proc = run([direct, "-C", inst.dir, "-f"], timeout=10)
    assert proc.returncode != 0
    assert "already running" in proc.stderr
    assert inst.master_pid() == master and pid_alive(master)


def test_max_use_and_max_idle_retire_children(inst):
    port = free_ports(1)[0]
    inst.write_master_cf(
        f"127.0.0.1:{port} inet n - n - 1 {inst.echod()}\n  -o max_use=2 -o max_idle=2s\n"
    )
    inst.start()
    pids = []
    for _ in range(3):
        c = Client(port)
        pids.append(c.greeting())
        c.close()
        time.sleep(0.2)
    assert pids[0] == pids[1] and pids[2] != pids[0]
    wait_for(lambda: not pid_alive(pids[2]), 10, what="idle child to exit")


def test_wakeup_triggers_unix_service(inst):
    inst.write_master_cf(f"waker unix n - n 1 1 {inst.echod()}\n")
    inst.start()
    wait_for(lambda: inst.log().count("wakeup received") >= 2, 10, what="two wakeups")
    assert (inst.dir / "queue" / "private" / "waker").exists() is False
    assert (inst.dir / "queue" / "public" / "waker").is_socket()


def test_missing_program_disables_service(inst):
    port = free_ports(1)[0]
    inst.write_master_cf(
        f"127.0.0.1:{port} inet n - n - 1 /nonexistent/daemon\n"
        f"127.0.0.1:{free_ports(1)[0]} inet n - n - 1 {inst.echod()}\n"
    )
    inst.start()
    assert "/nonexistent/daemon" in inst.log()
    assert inst.cmd("check").returncode == 1


def test_check_reports_file_and_line(inst):
    echo_service(inst)
    assert inst.cmd("check").returncode == 0
    with open(inst.dir / "master.cf", "a") as f:
        f.write("bad line\n")
    proc = inst.cmd("check")
    assert proc.returncode == 1
    assert "master.cf:2" in proc.stderr


def test_init_instance_is_complete(inst):
    d = inst.dir
    for name in ("main.cf", "master.cf", "cert.pem", "key.pem", "vmailbox", "vmailbox.db", "passwd", "passwd.db"):
        assert (d / name).exists(), name
    assert (d / "key.pem").stat().st_mode & 0o077 == 0
    assert (d / "passwd").stat().st_mode & 0o077 == 0
    assert re.search(r"user demo@example\.test, password \S{16}", inst.init_output)
    out = inst.cmd("conf", "-n", check=True).stdout
    assert f"queue_directory = {d}/queue" in out
    assert "inet_interfaces = loopback-only" in out
    # Starting and stopping the bare instance works as is.
    inst.start()
    assert inst.cmd("status").returncode == 0
    assert inst.stop().returncode == 0


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()
    return fields


@root_only
def test_unprivileged_child_identity_and_chroot(inst):
    import pwd

    port = echo_service(inst, chroot="y")
    # unpriv column "-" (yes): echod becomes network_user.
    inst.start()
    c = Client(port)
    child = c.greeting()
    net = pwd.getpwnam("postern-net")
    st = proc_status(child)
    assert st["Uid"] == [str(net.pw_uid)] * 4
    assert st["Gid"] == [str(net.pw_gid)] * 4
    assert st.get("Groups", []) == []
    assert os.readlink(f"/proc/{child}/root") == str(inst.dir / "queue")
    assert c.ask("id").startswith(f"uid {net.pw_uid} gid {net.pw_gid} groups")
    c.close()


@root_only
def test_privileged_service_keeps_root_only_when_allowed(inst):
    port = free_ports(1)[0]
    inst.write_master_cf(f"127.0.0.1:{port} inet n n n - 1 {inst.echod()}\n")
    inst.start()
    c = Client(port)
    child = c.greeting()
    assert proc_status(child)["Uid"][0] == "0"
    assert os.readlink(f"/proc/{child}/root") == "/"
    c.close()


@root_only
def test_queue_tree_owners_and_modes(inst):
    import grp
    import pwd

    echo_service(inst)
    inst.start()
    q = inst.dir / "queue"
    owner = pwd.getpwnam("postern")
    drop = grp.getgrnam("posterndrop")
    st = (q / "incoming").stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (owner.pw_uid, 0o700)
    st = (q / "maildrop").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (owner.pw_uid, drop.gr_gid, 0o1730)
    st = (q / "deferred" / "A").stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (owner.pw_uid, 0o700)
    # A wrong mode is repaired at the next start.
    os.chmod(q / "active", 0o777)
    inst.stop()
    inst.start()
    assert (q / "active").stat().st_mode & 0o7777 == 0o700


@root_only
def test_init_start_status_stop_as_normal_user(postern):
    """The README's first command as an unprivileged user on a root-run host."""
    import pwd
    import shutil
    import tempfile

    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="postern-user-", dir="/tmp")
    os.chown(base, nobody.pw_uid, nobody.pw_gid)

    def as_nobody(*args, timeout=60):
        return run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                    postern, *args], timeout=timeout)

    try:
        if as_nobody("version").returncode != 0:
            pytest.skip("the build tree is not readable by nobody")
        demo = os.path.join(base, "demo")
        ports = ",".join(map(str, free_ports(5)))
        proc = as_nobody("init", "-p", ports, demo)
        assert proc.returncode == 0, proc.stderr
        port = free_ports(1)[0]
        with open(os.path.join(demo, "master.cf"), "a") as f:
            f.write(f"127.0.0.1:{port} inet n - y - 2 {os.path.join(os.path.dirname(os.path.dirname(postern)), 'tests', 'echod')}\n")
        proc = as_nobody("-c", demo, "start")
        assert proc.returncode == 0, proc.stderr
        master = int(open(os.path.join(demo, "queue", "pid", "master.pid")).read())
        assert os.stat(f"/proc/{master}").st_uid == nobody.pw_uid
        c = Client(port)
        child = c.greeting()
        assert os.stat(f"/proc/{child}").st_uid == nobody.pw_uid
        assert os.readlink(f"/proc/{child}/root") == "/"  # no chroot without root
        c.close()
        assert as_nobody("-c", demo, "status").returncode == 0
        assert as_nobody("-c", demo, "stop").returncode == 0
        assert as_nobody("-c", demo, "status").returncode == 1
        assert not pid_alive(master)
    finally:
        pidfile = os.path.join(base, "demo", "queue", "pid", "master.pid")
        if os.path.exists(pidfile):
            try:
                pid = int(open(pidfile).read())
                if pid_alive(pid):
                    os.kill(pid, signal.SIGTERM)
            except (ValueError, OSError):
                pass
        shutil.rmtree(base, ignore_errors=True)


def test_event_server_serves_many_clients_in_one_process(inst):
    port = echo_service(inst, maxproc=1, args=" event")
    inst.start()
    clients = [Client(port) for _ in range(5)]
    pids = {c.greeting() for c in clients}
    assert len(pids) == 1
    pid = pids.pop()
    for i, c in enumerate(clients):
        assert c.ask(f"line {i}") == f"{pid}: line {i}"
    for c in clients:
        c.close()


def test_watchdog_kills_a_stuck_child(inst):
    port = free_ports(1)[0]
    inst.write_master_cf(f"127.0.0.1:{port} inet n - n - 1 {inst.echod()}\n  -o daemon_timeout=2s\n")
    inst.start()
    c = Client(port)
    child = c.greeting()
    c.send("sleep 30")
    wait_for(lambda: not pid_alive(child), 10, what="watchdog")
    c.close()
    wait_for(lambda: f"pid {child} killed by signal 14 (watchdog" in inst.log(), 5, what="watchdog log line")
    c2 = Client(port)
    assert c2.greeting() != child
    c2.close()


def test_children_exit_when_master_dies(inst):
    port = echo_service(inst)
    inst.start()
    master = inst.master_pid()
    busy = Client(port)
    busy_pid = busy.greeting()
    idle = Client(port)
    idle_pid = idle.greeting()
    idle.close()
    os.kill(master, signal.SIGKILL)
    wait_for(lambda: not pid_alive(idle_pid), 10, what="idle child to notice")
    # A busy child finishes its client first.
    assert busy.ask("last words") == "echo: last words"
    busy.close()
    wait_for(lambda: not pid_alive(busy_pid), 10, what="busy child to finish")
    # The lock died with the master: a new one starts cleanly.
    inst.start()
    assert inst.master_pid() != master
    c = Client(port)
    c.greeting()
    c.close()


def test_ipv6_and_inet_interfaces(inst):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    p1, p2 = free_ports(2)
    inst.write_master_cf(f"[::1]:{p1} inet n - n - 2 {inst.echod()}\n{p2} inet n - n - 2 {inst.echod()}\n")
    inst.start()
    s = socket.create_connection(("::1", p1), timeout=10)
    assert s.recv(100).startswith(b"hello ")
    s.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", p1), timeout=2)
    # Port only: every address of inet_interfaces (loopback-only = 127.0.0.1 and ::1).
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.create_connection((host, p2), timeout=10)
        assert s.recv(100).startswith(b"hello ")
        s.close()


@root_only
def test_unix_socket_owners_and_modes(inst):
    import grp
    import pwd
    import stat

    inst.write_master_cf(
        f"cleanup unix - - n - 1 {inst.echod()}\n"
        f"qmgrish unix - - n - 1 {inst.echod()}\n"
        f"pub unix n - n - 1 {inst.echod()}\n"
    )
    inst.start()
    owner = pwd.getpwnam("postern")
    net = pwd.getpwnam("postern-net")
    drop = grp.getgrnam("posterndrop")
    q = inst.dir / "queue"
    st = (q / "private" / "cleanup").stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (owner.pw_uid, net.pw_gid, 0o660)
    st = (q / "private" / "qmgrish").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (owner.pw_uid, 0o600)
    st = (q / "public" / "pub").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (owner.pw_uid, drop.gr_gid, 0o660)
    st = (q / "private").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (owner.pw_uid, net.pw_gid, 0o710)


def test_scoreboard_counts_idle_children(inst):
    # Children of a service with a process limit tell the master about
    # clients through a shared scoreboard (doc/ipc.md 9.3), writing to the
    # status pipe only when the "anyone idle?" answer may change.  The
    # master must still start a child exactly when all are busy, and
    # never one more while some are idle.
    port = echo_service(inst, maxproc=5)
    inst.start()
    first = Client(port)
    pid = first.greeting()
    assert os.readlink(f"/proc/{pid}/fd/7").startswith("/memfd:board")
    # The standard descriptors are /dev/null, not one of the master's.
    assert [os.readlink(f"/proc/{pid}/fd/{i}") for i in (0, 1, 2)] == ["/dev/null"] * 3
    # All busy one after the other: a new child for each new client.
    clients = [first] + [Client(port) for _ in range(3)]
    pids = {pid} | {c.greeting() for c in clients[1:]}
    assert len(pids) == 4
    # All four idle at once (some may have stayed silent about it) ...
    for c in clients:
        c.close()
    wait_for(lambda: len(inst.children()) == 4, 5)
    time.sleep(0.5)
    # ... so twenty clients in a row, and two at a time, are served by them.
    for _ in range(20):
        c = Client(port)
        assert c.greeting() in pids
        c.close()
    for _ in range(10):
        a, b = Client(port), Client(port)
        assert {a.greeting(), b.greeting()} <= pids
        a.close()
        b.close()
    assert set(inst.children()) == pids
    # Five busy: the limit; a sixth client waits, and is served once one is free.
    clients = [Client(port) for _ in range(5)]
    served = {c.greeting() for c in clients}
    assert len(served) == 5 and len(inst.children()) == 5
    extra = Client(port)
    with pytest.raises(socket.timeout):
        extra.greeting(timeout=1.0)
    clients[0].close()
    assert extra.greeting() in served
    for c in clients[1:] + [extra]:
        c.close()


def test_service_without_a_limit_has_a_scoreboard_too(inst):
    # process limit 0 (none, as cleanup has): 256 slots.
    port = echo_service(inst, maxproc=0)
    inst.start()
    clients = [Client(port) for _ in range(3)]
    pids = {c.greeting() for c in clients}
    assert len(pids) == 3
    assert os.readlink(f"/proc/{next(iter(pids))}/fd/7").startswith("/memfd:board")
    assert os.stat(f"/proc/{next(iter(pids))}/fd/7").st_size == 256
    for c in clients:
        c.close()
    time.sleep(0.5)
    for _ in range(10):
        c = Client(port)
        assert c.greeting() in pids
        c.close()
    assert set(inst.children()) == pids

"""Fault injection: nothing accepted is ever lost.

Under a steady load of POSTERN_CHAOS_N messages (default 2,000; 1,000 on
a sanitizer build) sent by several SMTP clients into local Maildir
delivery, and, when this tree has the smtp client, relayed to a sink
(a small SMTP server in this file), the test SIGKILLs a random smtpd,
cleanup, qmgr, local or smtp process again and again (at least
POSTERN_CHAOS_KILLS, default 20), and the master itself once, then
starts the instance again.  Processes are found by walking the
master's children in /proc and reading their process titles; nothing
is killed by name.

The clients behave like real ones: a message is "accepted" only when
its end of data got a 250; any other outcome (a dropped connection, a
4xx, a refused connection while the master is down) means it is sent
again later.  At the end, after the queue has drained, every accepted
message must be in the mailbox (and, if relayed, at the sink): the
number lost must be 0.  Duplicates are allowed (delivery is
at-least-once) and reported: each comes from a kill between a
delivery and its being marked done, or between the queue commit and
the 250 reaching the client.
"""
import os
import random
import re
import signal
import smtplib
import socket
import threading
import time

import pytest

from instance import pid_alive, proc_children, wait_for
from mail import queue

DEMO = "demo@example.test"
REMOTE = "chaos@remote.test"
SUBJECT = re.compile(rb"^Subject: (chaos \d+)$", re.M)


def sanitized(inst):
    try:
        return "-fsanitize=address" in (inst.build / "Makefile").read_text()
    except OSError:
        return False


def figure(inst, text):
    print(text)
    try:
        with open(inst.build / "reliability-figures.txt", "a") as f:
            f.write(text + (" (ASan+UBSan build)" if sanitized(inst) else "") + "\n")
    except OSError:
        pass


# ---------------------------------------------------------------- the sink


class Sink:
    """A minimal SMTP server that counts the Subject of every message it
    accepts (with 250 after the final dot).  Loopback only; a thread per
    connection; every wait bounded."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.got = {}
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(60)
        f = c.makefile("rb")
        try:
            c.sendall(b"220 sink.test ESMTP\r\n")
            while True:
                line = f.readline(4096)
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    c.sendall(b"250-sink.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n")
                elif verb == b"DATA":
                    c.sendall(b"354 go ahead\r\n")
                    data = b""
                    while True:
                        ln = f.readline(65536)
                        if not ln:
                            return  # cut off mid-message: not accepted
                        if ln == b".\r\n":
                            break
                        data += ln
                    m = SUBJECT.search(data.replace(b"\r\n", b"\n"))
                    with self.lock:
                        if m:
                            self.got[m.group(1)] = self.got.get(m.group(1), 0) + 1
                    c.sendall(b"250 2.0.0 accepted\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 ok\r\n")
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


# ---------------------------------------------------------------- processes


def titled(inst, names):
    """{pid: service} for the master's children whose title is "NAME: ..."."""
    out = {}
    pid = inst.master_pid()
    if not pid:
        return out
    for child in proc_children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        name = title.split(":", 1)[0]
        if name in names and title.startswith(name + ": "):
            out[child] = name
    return out


def maildir_subjects(inst):
    seen = {}
    d = inst.dir / "mail" / "example.test" / "demo" / "new"
    if not d.exists():
        return seen
    for name in os.listdir(d):
        try:
            with open(d / name, "rb") as f:
                head = f.read(4096)
        except OSError:
            continue
        m = SUBJECT.search(head)
        if m:
            seen[m.group(1)] = seen.get(m.group(1), 0) + 1
    return seen


# ---------------------------------------------------------------- the test


@pytest.fixture
def chaos(inst):
    smtp = (inst.build / "libexec" / "smtp").exists()
    sink = Sink() if smtp else None
    conf = dict(smtpd_error_sleep_time="0", minimal_backoff_time="1s", maximal_backoff_time="2s",
                queue_run_delay="1s", smtpd_client_connection_count_limit="0")
    if smtp:
        conf["relayhost"] = f"[127.0.0.1]:{sink.port}"
        cf = inst.dir / "master.cf"
        lines = [ln for ln in cf.read_text().splitlines(True) if not re.match(r"#?smtp\s+unix", ln)]
        cf.write_text("".join(lines) + "smtp unix - - n - - smtp\n")
    inst.conf(**conf)
    inst.start()
    inst.sink = sink
    yield inst
    if sink:
        sink.stop()


def test_sigkill_anything_nothing_accepted_is_lost(chaos):
    inst = chaos
    n = int(os.environ.get("POSTERN_CHAOS_N", "1000" if sanitized(inst) else "2000"))
    min_kills = int(os.environ.get("POSTERN_CHAOS_KILLS", "20"))
    relay = inst.sink is not None
    victims = ["smtpd", "cleanup", "qmgr", "local"] + (["smtp"] if relay else [])
    if os.environ.get("POSTERN_CHAOS_VICTIMS"):  # for a closer look: "qmgr,smtp"
        victims = [v for v in os.environ["POSTERN_CHAOS_VICTIMS"].split(",") if v in victims]
    port = inst.ports[0]

    accepted = {}  # subject -> recipients
    lock = threading.Lock()
    todo = list(range(n))
    random.Random(1).shuffle(todo)
    state = {"sent": 0, "retries": 0, "master_down": False}

    def recipients(i):
        return [DEMO, REMOTE] if relay and i % 2 else [DEMO]

    def sender():
        conn = None
        while True:
            with lock:
                if not todo:
                    break
                i = todo.pop()
            subject = f"chaos {i}"
            body = f"Subject: {subject}\r\nMessage-ID: <chaos.{i}@client.test>\r\n\r\nbody {i}\r\n" + "x" * (i % 4000)
            while True:
                try:
                    if conn is None:
                        conn = smtplib.SMTP("127.0.0.1", port, timeout=60)
                        conn.ehlo("client.test")
                    refused = conn.sendmail("sender@client.test", recipients(i), body)
                    assert not refused
                    with lock:
                        accepted[subject.encode()] = recipients(i)
                        state["sent"] += 1
                    break
                except (smtplib.SMTPException, OSError, AssertionError):
                    with lock:
                        state["retries"] += 1
                    try:
                        if conn is not None:
                            conn.close()
                    except Exception:  # noqa: BLE001 - the connection is gone anyway
                        pass
                    conn = None
                    time.sleep(0.2)
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                pass

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()

    kills = {name: 0 for name in victims}
    kills["master"] = 0
    rng = random.Random(2)
    deadline = time.monotonic() + 300
    turn = 0
    while time.monotonic() < deadline:
        busy = any(t.is_alive() for t in threads)
        if not busy and sum(kills.values()) >= min_kills + 1 and all(kills.values()):
            break
        time.sleep(rng.uniform(0.1, 0.4) if busy else 0.2)
        if kills["master"] == 0 and state["sent"] >= n // 2:
            # Once: the master itself.  Its children notice and leave; then start again.
            old = inst.master_pid()
            children = proc_children(old)
            os.kill(old, signal.SIGKILL)
            kills["master"] += 1
            wait_for(lambda: not pid_alive(old) and not any(pid_alive(c) for c in children), 60,
                     what="the old master's children to leave")
            inst.start()
            continue
        # Each service in turn (so every kind is hit), a random process of it.
        procs = titled(inst, victims)
        for k in range(len(victims)):
            name = victims[(turn + k) % len(victims)]
            pids = sorted(p for p, v in procs.items() if v == name)
            if pids:
                turn += k + 1
                break
        else:
            if not busy:
                # Idle and nothing running: wake the pipeline so there is something to kill.
                inst.cmd("flush")
            continue
        try:
            os.kill(rng.choice(pids), signal.SIGKILL)
            kills[name] += 1
        except OSError:
            pass
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "senders did not finish"
    sending = time.monotonic() - t0
    assert len(accepted) == n

    # Let everything drain: deliveries cut short by a kill were deferred.
    def drained():
        if queue(inst) == []:
            return True
        inst.cmd("flush")
        return False

    wait_for(drained, 240, interval=2, what="an empty queue")
    time.sleep(1)
    seen = maildir_subjects(inst)
    at_sink = dict(inst.sink.got) if relay else {}
    lost_local = sorted(s for s in accepted if s not in seen)
    lost_remote = sorted(s for s, r in accepted.items() if REMOTE in r and s not in at_sink)
    dup_local = sum(c - 1 for c in seen.values())
    dup_remote = sum(c - 1 for c in at_sink.values())
    total_kills = sum(kills.values())
    nrelayed = sum(1 for r in accepted.values() if REMOTE in r)
    figure(inst, f"chaos: {n} messages accepted ({nrelayed} also relayed) in {sending:.0f}s, "
                 f"{state['retries']} client retries, {total_kills} kills {kills}; "
                 f"lost {len(lost_local)} local + {len(lost_remote)} relayed; "
                 f"duplicated {dup_local} local + {dup_remote} relayed")
    # What a killed cleanup was writing stays, incomplete (mode 0600), until qmgr's
    # next scan after QMGR_DEBRIS_AGE; such a message was never accepted.  Nothing else may stay.
    debris = []
    for sub in ("incoming", "active", "deferred", "hold", "corrupt"):
        for d, _, fs in os.walk(inst.dir / "queue" / sub):
            for f in fs:
                mode = os.stat(os.path.join(d, f)).st_mode & 0o7777
                assert sub == "incoming" and mode == 0o600, (sub, f, oct(mode))
                debris.append(f)
    if debris:
        print(f"incomplete files left by killed cleanups: {len(debris)}")
    assert total_kills >= min_kills, kills
    assert kills["master"] == 1
    assert not lost_local, lost_local[:10]
    assert not lost_remote, lost_remote[:10]

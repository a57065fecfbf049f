"""End to end: SMTP in, qmgr, local, Maildir/mbox out, on a 'postern init' instance.

These tests check what a mail user sees: the bytes in the mailbox, one
copy per recipient, mail that waits when a mailbox is broken and arrives
after it is fixed, and nothing lost when daemons are killed mid-stream.
"""
import email
import email.policy
import os
import re
import signal
import smtplib
import stat
import threading
import time

import pytest

from instance import pid_alive, proc_children, run, wait_for
from mail import queue, tls_client_context

DEMO = "demo@example.test"


@pytest.fixture
def live(inst):
    inst.smtp = inst.ports[0]
    inst.conf(smtpd_error_sleep_time="0")
    inst.start()
    yield inst


def maildir(inst, user="demo", domain="example.test"):
    return inst.dir / "mail" / domain / user


def new_files(inst, user="demo"):
    d = maildir(inst, user) / "new"
    return sorted(d.iterdir()) if d.exists() else []


def wait_files(inst, n, user="demo", timeout=30):
    return wait_for(lambda: len(new_files(inst, user)) >= n and new_files(inst, user), timeout,
                    what=f"{n} messages in {user}'s Maildir")


def add_vmailbox(inst, entries):
    """Add virtual mailbox users: {address: path relative to virtual_mailbox_base}."""
    text = (inst.dir / "vmailbox").read_text()
    for addr, path in entries.items():
        text += f"{addr} {path}\n"
    (inst.dir / "vmailbox").write_text(text)
    run([inst.postern, "-c", inst.dir, "map", f"hash:{inst.dir}/vmailbox"], check=True)
    inst.reload()
    time.sleep(1.2)  # tables are checked for changes once a second


def send(inst, rcpts, data, sender="sender@example.org"):
    with smtplib.SMTP("127.0.0.1", inst.smtp, timeout=60) as s:
        return s.sendmail(sender, rcpts, data)


def test_demo_user_gets_mail_within_a_second(live):
    t0 = time.monotonic()
    send(live, [DEMO], "Subject: quick\r\n\r\nhello\r\n")
    files = wait_files(live, 1, timeout=10)
    took = time.monotonic() - t0
    assert took < 2.0, f"delivery took {took:.2f}s"
    name = files[0].name
    m = re.search(r",S=(\d+),W=(\d+)$", name)
    assert m, name
    data = files[0].read_bytes()
    assert int(m.group(1)) == len(data)
    assert int(m.group(2)) == len(data) + data.count(b"\n")
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    log = live.log()
    assert re.search(r"to=<demo@example\.test>, relay=local, delay=[\d.]+, delays=[\d./]+, dsn=2\.0\.0, status=sent",
                     log), log
    wait_for(lambda: queue(live) == [], 10, what="an empty queue")
    assert re.search(r"[0-9A-V]{16}: removed", live.log())


def test_byte_exact_delivery(live):
    body = (b"first line\r\n.dot line\r\n..two dots\r\n8-bit: \xc3\xa9t\xc3\xa9\r\n"
            + b"long " * 3000 + b"\r\n" + bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n")
    raw = b"From: a@example.org\r\nTo: demo@example.test\r\nSubject: exact\r\n\r\n" + body
    with smtplib.SMTP("127.0.0.1", live.smtp, timeout=60) as s:
        s.ehlo("c")
        s.mail("a@example.org", ["BODY=8BITMIME"])
        s.rcpt(DEMO)
        code, resp = s.data(raw)
        assert code == 250
    files = wait_files(live, 1)
    data = files[0].read_bytes()
    assert data.startswith(b"Return-Path: <a@example.org>\nDelivered-To: demo@example.test\nReceived: from c ")
    expected = raw.replace(b"\r\n", b"\n")
    assert data.endswith(expected), data[-200:]


def test_each_recipient_exactly_one_copy(live):
    add_vmailbox(live, {"ann@example.test": "example.test/ann/", "bob@example.test": "example.test/bob/"})
    send(live, [DEMO, "ann@example.test", "bob@example.test", "ann@example.test"], "Subject: many\r\n\r\nx\r\n")
    for user in ("demo", "ann", "bob"):
        wait_files(live, 1, user)
    time.sleep(1)
    for user in ("demo", "ann", "bob"):
        files = new_files(live, user)
        assert len(files) == 1, (user, files)
        assert f"Delivered-To: {user}@example.test\n".encode() in files[0].read_bytes()


def test_mbox_delivery_quotes_from_lines(live):
    add_vmailbox(live, {"mbx@example.test": "example.test/mbx.mbox"})
    send(live, ["mbx@example.test"], "Subject: mbox\r\n\r\nFrom the start\r\n>From quoted\r\nplain\r\n")
    send(live, ["mbx@example.test"], "Subject: second\r\n\r\nsecond body\r\n")
    path = live.dir / "mail" / "example.test" / "mbx.mbox"
    wait_for(lambda: path.exists() and path.read_bytes().count(b"\nFrom ") + path.read_bytes().startswith(b"From ") >= 2,
             30, what="two messages in the mbox")
    text = path.read_bytes()
    assert text.startswith(b"From sender@example.org ")
    assert b"\n>From the start\n" in text
    assert b"\n>>From quoted\n" in text
    msgs = [m for m in re.split(rb"\n(?=From sender@example\.org )", text)]
    assert len(msgs) == 2
    assert all(m.rstrip(b"\n").endswith((b"plain", b"second body")) for m in msgs)


def test_unwritable_mailbox_is_deferred_then_delivered_after_flush(live):
    send(live, [DEMO], "Subject: first\r\n\r\nmake the Maildir\r\n")
    wait_files(live, 1)
    new = maildir(live) / "new"
    os.chmod(new, 0o500)
    try:
        send(live, [DEMO], "Subject: waits\r\n\r\nplease wait\r\n")
        wait_for(lambda: re.search(r"to=<demo@example\.test>.*status=deferred", live.log()), 30, what="a deferral")
        msgs = queue(live)
        assert len(msgs) == 1
        reasons = run([live.postern, "-c", live.dir, "queue"]).stdout
        assert "demo@example.test" in reasons
        assert len(new_files(live)) == 1
    finally:
        os.chmod(new, 0o700)
    assert live.cmd("flush").returncode == 0
    wait_files(live, 2, timeout=30)
    wait_for(lambda: queue(live) == [], 20, what="an empty queue after flush")


def test_local_system_user_and_unknown(live):
    # A local recipient that does not exist is refused at RCPT time already.
    with smtplib.SMTP("127.0.0.1", live.smtp, timeout=30) as s:
        s.ehlo("c")
        s.mail("a@example.org")
        code, _ = s.rcpt("no-such-user-here@localhost")
        assert code == 550


def count_subjects(inst, prefix):
    seen = {}
    for f in new_files(inst):
        m = re.search(rb"\nSubject: (" + prefix.encode() + rb" \d+)\n", f.read_bytes())
        if m:
            seen[m.group(1)] = seen.get(m.group(1), 0) + 1
    return seen


def service_pids(inst, name):
    out = []
    for pid in proc_children(inst.master_pid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(f"{name}: "):
            out.append(pid)
    return out


def test_crash_safety_kill_qmgr_and_local_during_a_batch(live):
    n = int(os.environ.get("POSTERN_CRASH_N", "1000"))
    sent = set()
    errors = []
    lock = threading.Lock()

    def sender(k):
        try:
            with smtplib.SMTP("127.0.0.1", live.smtp, timeout=120) as s:
                for i in range(k, n, 10):
                    s.sendmail("a@example.org", [DEMO], f"Subject: batch {i}\r\n\r\nmessage {i}\r\n")
                    with lock:
                        sent.add(f"batch {i}".encode())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    kills = 0
    deadline = time.monotonic() + 300
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        time.sleep(0.3)
        for name in ("qmgr", "local"):
            for pid in service_pids(live, name):
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except OSError:
                    pass
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(sent) == n
    # qmgr comes back (the master restarts it on the next trigger or wakeup) and finishes.
    def drained():
        # Deliveries cut short by a kill were deferred: ask for them now.
        if queue(live) == []:
            return True
        live.cmd("flush")
        return False

    wait_for(drained, 240, interval=2, what="an empty queue")
    seen = count_subjects(live, "batch")
    lost = sent - set(seen)
    dups = sum(c - 1 for c in seen.values())
    print(f"crash test: {n} sent, {kills} kills, {len(lost)} lost, {dups} duplicated")
    assert kills >= 3
    assert not lost, sorted(lost)[:10]

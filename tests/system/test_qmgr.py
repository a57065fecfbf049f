"""qmgr end to end: smtpd -> cleanup -> qmgr -> a delivery agent, on real instances.

The "local" transport is tests/fakeagent, which answers by the recipient's
local part (ok..., defer..., bounce..., crash..., slow...) and logs every
delivery to delivered.log ("QUEUEID ADDRESS START END") and stores each
delivered message in msgs/.  What is checked is what an administrator
sees: the log lines, the queue listing, the delivery log, the notices.
"""
import email
import email.policy
import os
import re
import smtplib
import socket
import stat
import time

import pytest

from instance import run, wait_for
from mail import queue

PARAMS = dict(
    local_recipient_maps="",
    smtpd_error_sleep_time="0",
    queue_run_delay="1s",
    # Deferred mail is retried only when a test asks (postern flush).
    minimal_backoff_time="3600s",
    maximal_backoff_time="7200s",
)


def master_cf(inst, qmgr=True, local=True):
    fake = inst.build / "tests" / "fakeagent"
    lines = [
        f"127.0.0.1:{inst.ports[0]}   inet  n  -  y  -  -  smtpd",
        "cleanup  unix  -  -  n  -  0  cleanup",
        "anvil    unix  -  -  n  -  1  anvil",
    ]
    if qmgr:
        lines.append("qmgr     unix  n  -  n  300  1  qmgr")
    if local:
        lines.append(f"local    unix  -  -  n  -  -  {fake} {inst.dir / 'delivered.log'} {inst.dir / 'msgs'}")
    return "\n".join(lines) + "\n"


def prepare(inst, qmgr=True, **params):
    if not (inst.build / "tests" / "fakeagent").exists():
        pytest.skip("tests/fakeagent not built")
    log = inst.dir / "delivered.log"
    log.touch()
    os.chmod(log, 0o666)
    (inst.dir / "msgs").mkdir(exist_ok=True)
    os.chmod(inst.dir / "msgs", 0o777)
    inst.conf(**{**PARAMS, **params})
    inst.write_master_cf(master_cf(inst, qmgr=qmgr))
    inst.smtp = inst.ports[0]
    return inst


@pytest.fixture
def qm(inst):
    prepare(inst)
    inst.start()
    yield inst


def send(inst, sender, rcpts, subject="test", rcpt_options=(), mail_options=()):
    """One message by SMTP; returns its queue ID."""
    msg = f"From: <{sender or 'nobody@example.org'}>\r\nSubject: {subject}\r\n\r\nHello.\r\n"
    with smtplib.SMTP("127.0.0.1", inst.smtp, timeout=30) as s:
        s.ehlo("client.example")
        code, resp = s.mail(sender, list(mail_options))
        assert code == 250, resp
        for r in rcpts:
            code, resp = s.rcpt(r, list(rcpt_options))
            assert code == 250, (r, resp)
        code, resp = s.data(msg)
        assert code == 250, resp
    m = re.search(rb"queued as ([0-9A-V]{16})", resp)
    assert m, resp
    return m.group(1).decode()


def wakeup(inst):
    """What the master's wakeup timer does: the byte W on public/qmgr (this starts qmgr)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(inst.dir / "queue" / "public" / "qmgr"))
    s.sendall(b"W")
    s.close()


def delivered(inst):
    """Lines of the fake agent's log: (queue ID, address, start, end)."""
    out = []
    for line in (inst.dir / "delivered.log").read_text().splitlines():
        qid, addr, start, end = line.split()
        out.append((qid, addr, float(start), float(end)))
    return out


def wait_log(inst, pattern, timeout=20, count=1):
    rx = re.compile(pattern)
    return wait_for(lambda: len(rx.findall(inst.log())) >= count and rx.findall(inst.log()), timeout,
                    what=f"{count} x /{pattern}/ in the maillog")


def queue_empty(inst):
    return queue(inst) == []


def notices(inst):
    """Delivered messages that are delivery status notifications, parsed."""
    out = []
    for name in sorted(os.listdir(inst.dir / "msgs")):
        raw = (inst.dir / "msgs" / name).read_bytes()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        if msg.get_content_type() == "multipart/report":
            out.append(msg)
    return out


def dsn_fields(notice):
    """Per-recipient field blocks of the message/delivery-status part."""
    for part in notice.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            return [dict(b.items()) for b in blocks[1:]]
    raise AssertionError("no message/delivery-status part")


SENT = (r"{qid}: to=<{rcpt}>, relay=fake, delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, "
        r"dsn=2\.0\.0, status=sent \(delivered by fakeagent\)")


def test_delivered_once_and_removed(qm):
    qid = send(qm, "alice@example.org", ["ok1@localhost", "ok2@localhost", "ok3@localhost"])
    wait_log(qm, rf"{qid}: removed")
    for r in ("ok1@localhost", "ok2@localhost", "ok3@localhost"):
        assert re.search(SENT.format(qid=qid, rcpt=re.escape(r)), qm.log()), qm.log()
    got = [(q, a) for q, a, _, _ in delivered(qm)]
    assert sorted(got) == sorted((qid, r) for r in ("ok1@localhost", "ok2@localhost", "ok3@localhost"))
    assert queue_empty(qm)
    # The content the agent read from the passed descriptor is the message.
    stored = (qm.dir / "msgs" / f"{qid}.0").read_bytes()
    assert b"Subject: test\n" in stored and stored.endswith(b"\nHello.\n")
    # Nothing left behind in the queue's directories.
    for d in ("incoming", "active"):
        assert os.listdir(qm.dir / "queue" / d) == []


def test_many_messages_each_delivered_once(qm):
    ids = [send(qm, "alice@example.org", [f"ok{i}@localhost", f"okb{i}@localhost"]) for i in range(30)]
    wait_for(lambda: len(delivered(qm)) >= 60, 30, what="60 deliveries")
    wait_for(lambda: queue_empty(qm), 20, what="an empty queue")
    got = sorted((q, a) for q, a, _, _ in delivered(qm))
    want = sorted([(q, f"ok{i}@localhost") for i, q in enumerate(ids)] +
                  [(q, f"okb{i}@localhost") for i, q in enumerate(ids)])
    assert got == want
    assert len(re.findall(r": removed$", qm.log(), re.M)) == 30


def test_defer_then_flush(qm):
    qid = send(qm, "alice@example.org", ["defer1@localhost", "ok1@localhost"])
    wait_log(qm, rf"{qid}: to=<defer1@localhost>, relay=fake, .*dsn=4\.2\.0, status=deferred \(fake deferral\)")
    wait_for(lambda: [m for m in queue(qm) if m["queue_name"] == "deferred"], 10, what="the message in deferred/")
    [m] = queue(qm)
    assert m["queue_id"] == qid
    rcpts = {r["address"]: r for r in m["recipients"]}
    assert rcpts["ok1@localhost"]["done"] is True
    assert rcpts["defer1@localhost"]["done"] is False
    assert rcpts["defer1@localhost"]["delay_reason"] == "fake deferral"
    text = qm.cmd("queue").stdout
    assert "(fake deferral)" in text and "defer1@localhost" in text and "ok1@localhost" not in text
    assert (qm.dir / "queue" / "deferred" / qid[10] / qid).exists()
    # Not due for an hour: nothing happens by itself...
    time.sleep(2.5)
    assert len(re.findall(rf"{qid}: to=<defer1@localhost>", qm.log())) == 1
    # ... until postern flush.
    proc = qm.cmd("flush")
    assert proc.returncode == 0, proc.stderr
    wait_log(qm, rf"{qid}: to=<defer1@localhost>, .*status=deferred", count=2)
    # ok1 was delivered once, and only once.
    assert [a for q, a, _, _ in delivered(qm)] == ["ok1@localhost"]
    assert [m["queue_id"] for m in queue(qm)] == [qid]


def test_crashing_agent_defers_nothing_lost(qm):
    qid = send(qm, "alice@example.org", ["crash1@localhost"])
    wait_log(qm, rf"{qid}: to=<crash1@localhost>, relay=none, .*dsn=4\.3\.0, status=deferred "
                 r"\(delivery agent went away\)")
    wait_for(lambda: [m for m in queue(qm) if m["queue_name"] == "deferred"], 10, what="the message in deferred/")
    [m] = queue(qm)
    assert m["queue_id"] == qid and m["recipients"][0]["done"] is False
    assert m["recipients"][0]["delay_reason"] == "delivery agent went away"


def test_restart_delivers_what_was_active(inst):
    # A message in active/ when qmgr is not running (it died mid-delivery).
    prepare(inst, qmgr=False)
    inst.start()
    qid = send(inst, "alice@example.org", ["ok-again@localhost"])
    inst.stop()
    q = inst.dir / "queue"
    os.rename(q / "incoming" / qid, q / "active" / qid)
    inst.write_master_cf(master_cf(inst))
    inst.start()
    # The master starts qmgr at its first wakeup (or when mail arrives): do not wait 300 s for it.
    wakeup(inst)
    wait_log(inst, rf"{qid}: removed")
    assert "put 1 message from active back into incoming" in inst.log()
    assert [(x, a) for x, a, _, _ in delivered(inst)] == [(qid, "ok-again@localhost")]


def test_stop_and_start_keeps_deferred(qm):
    qid = send(qm, "alice@example.org", ["defer2@localhost"])
    wait_for(lambda: [m for m in queue(qm) if m["queue_name"] == "deferred"], 20, what="the message in deferred/")
    qm.stop()
    qm.start()
    proc = qm.cmd("flush")
    assert proc.returncode == 0, proc.stderr
    wait_log(qm, rf"{qid}: to=<defer2@localhost>, .*status=deferred", count=2)
    assert [m["queue_id"] for m in queue(qm)] == [qid]


def test_expiry_returns_to_sender(inst):
    # maximal_queue_lifetime = 0: bounce after the first failed attempt.
    prepare(inst, maximal_queue_lifetime="0")
    inst.start()
    qid = send(inst, "ok-sender@localhost", ["defer3@localhost", "ok4@localhost"])
    wait_log(inst, rf"{qid}: from=<ok-sender@localhost>, status=expired, returned to sender")
    wait_log(inst, rf"{qid}: sender non-delivery notification: [0-9A-V]{{16}}")
    wait_log(inst, rf"{qid}: removed")
    wait_for(lambda: notices(inst), 20, what="the notice delivered")
    [notice] = notices(inst)
    assert notice["To"] == "ok-sender@localhost"
    fields = dsn_fields(notice)
    assert len(fields) == 1
    assert "defer3@localhost" in fields[0]["Final-Recipient"]
    assert fields[0]["Action"] == "failed"
    assert fields[0]["Status"] == "4.2.0"
    wait_for(lambda: queue_empty(inst), 20, what="an empty queue")


def test_bounce_notice_and_notify_never(qm):
    qid = send(qm, "ok-sender@localhost", ["bounce1@localhost", "ok5@localhost"])
    wait_log(qm, rf"{qid}: to=<bounce1@localhost>, relay=fake, .*dsn=5\.1\.1, status=bounced \(fake bounce\)")
    wait_log(qm, rf"{qid}: removed")
    wait_for(lambda: notices(qm), 20, what="the notice delivered")
    [notice] = notices(qm)
    assert notice["Subject"] == "Undelivered Mail Returned to Sender"
    [f] = dsn_fields(notice)
    assert "bounce1@localhost" in f["Final-Recipient"] and f["Action"] == "failed" and f["Status"] == "5.1.1"
    # NOTIFY=NEVER: no notice at all.
    qid = send(qm, "ok-sender@localhost", ["bounce2@localhost"], rcpt_options=["NOTIFY=NEVER"])
    wait_log(qm, rf"{qid}: removed")
    time.sleep(0.5)
    assert len(notices(qm)) == 1
    assert not re.search(rf"{qid}: sender non-delivery notification", qm.log())
    wait_for(lambda: queue_empty(qm), 20, what="an empty queue")


def test_success_notice(qm):
    qid = send(qm, "ok-sender@localhost", ["ok6@localhost"], rcpt_options=["NOTIFY=SUCCESS"])
    wait_log(qm, rf"{qid}: sender delivery status notification: [0-9A-V]{{16}}")
    wait_for(lambda: notices(qm), 20, what="the notice delivered")
    [notice] = notices(qm)
    [f] = dsn_fields(notice)
    assert f["Action"] == "delivered" and f["Status"] == "2.0.0"


def test_delay_notice_once(inst):
    # The message is retried in time for the notice (at arrival + 1 s), the
    # notice goes once, and then the normal backoff (an hour here) applies.
    prepare(inst, delay_warning_time="1s")
    inst.start()
    qid = send(inst, "ok-sender@localhost", ["defer4@localhost"])
    wait_log(inst, rf"{qid}: sender delay notification: [0-9A-V]{{16}}")
    wait_for(lambda: notices(inst), 20, what="the notice delivered")
    [notice] = notices(inst)
    assert notice["Subject"].startswith("Delayed Mail")
    [f] = dsn_fields(notice)
    assert "defer4@localhost" in f["Final-Recipient"] and f["Action"] == "delayed" and f["Status"] == "4.2.0"
    # Two attempts: the first and the retry for the notice; one when the
    # first came after the delay time already (a slow machine, a sanitizer
    # build), and the notice went with it.  None after the notice.
    attempts = len(re.findall(rf"{qid}: to=<defer4@localhost>", inst.log()))
    assert attempts in (1, 2)
    time.sleep(3)
    assert len(re.findall(rf"{qid}: sender delay notification", inst.log())) == 1
    assert len(re.findall(rf"{qid}: to=<defer4@localhost>", inst.log())) == attempts
    assert [m["queue_id"] for m in queue(inst)] == [qid]


def test_null_sender_bounce_goes_to_postmaster_and_no_further(inst):
    # A bounce of mail from <> goes to 2bounce_notice_recipient; when that
    # notice bounces too, it is discarded: no loop.
    prepare(inst, **{"2bounce_notice_recipient": "bounce-pm@localhost"})
    inst.start()
    qid = send(inst, "", ["bounce3@localhost"])
    m = wait_log(inst, rf"{qid}: sender non-delivery notification: ([0-9A-V]{{16}})")
    notice_id = m[0]
    wait_log(inst, rf"{notice_id}: to=<bounce-pm@localhost>, .*status=bounced")
    wait_log(inst, rf"{notice_id}: discarding double bounce")
    wait_log(inst, rf"{notice_id}: removed")
    wait_for(lambda: queue_empty(inst), 20, what="an empty queue")
    assert len(re.findall(r"non-delivery notification", inst.log())) == 1


def test_mailbox_concurrency(inst):
    # One mailbox: deliveries in turn (local_destination_concurrency_limit = 1);
    # another mailbox meanwhile is not held up.
    prepare(inst, local_destination_concurrency_limit="1")
    inst.start()
    for _ in range(3):
        send(inst, "alice@example.org", ["slow1@localhost"])
    send(inst, "alice@example.org", ["slow2@localhost"])
    wait_for(lambda: len(delivered(inst)) >= 4, 40, what="4 slow deliveries")
    one = sorted((s, e) for _, a, s, e in delivered(inst) if a == "slow1@localhost")
    two = [(s, e) for _, a, s, e in delivered(inst) if a == "slow2@localhost"]
    assert len(one) == 3 and len(two) == 1
    for (s1, e1), (s2, e2) in zip(one, one[1:]):
        assert s2 >= e1, one  # never two at once
    # slow2 ran while slow1's mailbox was busy, not after all three.
    assert two[0][0] < one[-1][0], (one, two)


def test_virtual_mailbox_concurrency(inst):
    # A virtual mailbox has its own limit (virtual_destination_concurrency_limit):
    # here 3 at once into one virtual mailbox while a local user's is held to 1.
    prepare(inst, local_destination_concurrency_limit="1", virtual_destination_concurrency_limit="3",
            virtual_mailbox_domains="virt.example",
            virtual_mailbox_maps="inline:{slowv@virt.example=virt.example/slowv/}")
    inst.start()
    for _ in range(3):
        send(inst, "alice@example.org", ["slowv@virt.example"])
    for _ in range(2):
        send(inst, "alice@example.org", ["slow1@localhost"])
    wait_for(lambda: len(delivered(inst)) >= 5, 40, what="5 slow deliveries")
    virt = sorted((s, e) for _, a, s, e in delivered(inst) if a == "slowv@virt.example")
    loc = sorted((s, e) for _, a, s, e in delivered(inst) if a == "slow1@localhost")
    assert len(virt) == 3 and len(loc) == 2
    # All three virtual deliveries overlapped; the local ones never did.
    assert max(s for s, _ in virt) < min(e for _, e in virt), virt
    assert loc[1][0] >= loc[0][1], loc


def test_missing_transport_defers_with_reason(qm):
    qid = send(qm, "alice@example.org", ["someone@remote.example"])
    wait_log(qm, rf"{qid}: to=<someone@remote.example>, relay=none, .*dsn=4\.3\.0, status=deferred "
                 r"\(mail transport unavailable: private/smtp: No such file or directory\)")
    wait_for(lambda: [m for m in queue(qm) if m["queue_name"] == "deferred"], 10, what="the message in deferred/")
    [m] = queue(qm)
    assert m["recipients"][0]["delay_reason"] == "mail transport unavailable: private/smtp: No such file or directory"


def test_trigger_garbage_is_ignored(qm):
    path = str(qm.dir / "queue" / "public" / "qmgr")
    for data in (b"\x00\xffZ", b"I" * 5000, b""):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        try:
            s.sendall(data)
        except OSError:
            pass
        s.close()
    wait_log(qm, r"trigger: ignoring")
    qid = send(qm, "alice@example.org", ["ok7@localhost"])
    wait_log(qm, rf"{qid}: removed")


def test_flush_without_qmgr(inst):
    proc = inst.cmd("flush")
    assert proc.returncode == 1
    assert "postern: flush: qmgr is not running (connect to public/qmgr:" in proc.stderr


# ---------------------------------------------------------------- the in-flow regulator (flow.h)


def child_named(inst, name):
    for pid in inst.children():
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == name:
                    return pid
        except OSError:
            pass
    return None


def flow_backlog(pid):
    """The backlog in the shared page, as process pid sees it (its descriptor 6)."""
    with open(f"/proc/{pid}/fd/6", "rb") as f:
        return int.from_bytes(f.read(4), "little")


@pytest.mark.skipif(os.geteuid() != 0, reason="reads other processes' descriptors: root only")
def test_qmgr_publishes_its_backlog(inst):
    prepare(inst, local_destination_concurrency_limit="1")
    inst.start()
    for _ in range(3):
        send(inst, "alice@example.org", ["slow1@localhost"])
    pid = wait_for(lambda: child_named(inst, "qmgr"), 10, what="qmgr")
    # Three new messages in the active queue, one delivered every 3 seconds.
    wait_for(lambda: flow_backlog(pid) >= 2, 10, what="a backlog of at least 2")
    wait_for(lambda: len(delivered(inst)) >= 3, 30, what="3 slow deliveries")
    wait_for(lambda: flow_backlog(pid) == 0, 10, what="the backlog back at 0")


@pytest.mark.skipif(os.geteuid() != 0, reason="writes another process's shared page: root only")
def test_smtpd_waits_while_the_backlog_is_large(inst):
    prepare(inst, qmgr=False, in_flow_delay="2s")
    inst.start()
    msg = "Subject: flow\r\n\r\nx\r\n"
    with smtplib.SMTP("127.0.0.1", inst.smtp, timeout=30) as s:
        s.ehlo("client.example")
        pid = wait_for(lambda: child_named(inst, "smtpd"), 10, what="smtpd")
        with open(f"/proc/{pid}/fd/6", "r+b") as f:
            f.write((1000).to_bytes(4, "little"))  # as qmgr would when 1,000 new messages wait
        t0 = time.monotonic()
        s.sendmail("alice@example.org", ["bob@localhost"], msg)
        slow = time.monotonic() - t0
        with open(f"/proc/{pid}/fd/6", "r+b") as f:
            f.write((0).to_bytes(4, "little"))
        t0 = time.monotonic()
        s.sendmail("alice@example.org", ["bob@localhost"], msg)
        fast = time.monotonic() - t0
    # It waited in_flow_delay, then took the message all the same.
    assert 1.9 <= slow < 10, slow
    assert fast < 1.0, fast
    assert len(queue(inst)) == 2


def fd_access(pid, fd=6):
    """O_RDONLY (0) or O_RDWR (2) of a process's descriptor, from /proc/PID/fdinfo."""
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8) & 3
    raise AssertionError("no flags line")


@pytest.mark.skipif(os.geteuid() != 0, reason="reads other processes' descriptors: root only")
def test_only_queue_daemons_may_write_the_flow_page(inst):
    # A subverted smtpd must not be able to hold mail back or silence qmgr's triggers.
    prepare(inst)
    inst.start()
    with smtplib.SMTP("127.0.0.1", inst.smtp, timeout=30) as s:
        s.ehlo("client.example")
        smtpd = wait_for(lambda: child_named(inst, "smtpd"), 10, what="smtpd")
        qmgr = wait_for(lambda: child_named(inst, "qmgr"), 10, what="qmgr")
        assert fd_access(smtpd) == os.O_RDONLY
        assert fd_access(qmgr) == os.O_RDWR
        # After a message smtpd has mapped the page (it reads it at DATA), read-only.
        s.sendmail("alice@example.org", ["ok1@localhost"], "Subject: flow\r\n\r\nx\r\n")
        with open(f"/proc/{smtpd}/maps") as f:
            flow = [ln for ln in f if "memfd:flow" in ln]
        assert flow and all(ln.split()[1].startswith("r-") for ln in flow), flow


def pool_files(inst):
    d = inst.dir / "queue" / "pool"
    return {name: os.lstat(d / name) for name in os.listdir(d)}


def test_finished_queue_files_are_reused(qm):
    # qmgr keeps a finished queue file as a spare and cleanup writes the
    # next message into it: no inode allocated or freed per message.  The
    # spare is cut to the new message's length, so a small message written
    # into a large message's file carries nothing of the old one.
    body = "".join(f"line {i} of the big message\r\n" for i in range(2000))
    with smtplib.SMTP("127.0.0.1", qm.smtp, timeout=30) as s:
        s.sendmail("alice@example.org", ["ok-big@localhost"], f"Subject: big\r\n\r\n{body}")
    wait_log(qm, r": removed")
    spares = pool_files(qm)
    assert len(spares) == 1, spares
    (st,) = spares.values()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size > 50000 and st.st_nlink == 1
    qid = send(qm, "alice@example.org", ["ok-small@localhost"], subject="small")
    wait_log(qm, rf"{qid}: removed")
    stored = (qm.dir / "msgs" / f"{qid}.0").read_bytes()
    assert b"Subject: small\n" in stored and stored.endswith(b"\nHello.\n"), stored[-200:]
    assert b"big message" not in stored
    # The same inode went round: pool -> incoming -> active -> pool.
    again = pool_files(qm)
    assert [(x.st_ino, stat.S_IMODE(x.st_mode)) for x in again.values()] == [(st.st_ino, 0o600)], again
    assert list(again) != list(spares), "a pool name is used once"
    assert os.listdir(qm.dir / "queue" / "incoming") == [] and os.listdir(qm.dir / "queue" / "active") == []


def test_many_messages_through_the_pool_each_delivered_once(qm):
    # More messages than ever sit in the queue at once: most are written into spares.
    ids = []
    for batch in range(4):
        ids += [send(qm, "alice@example.org", [f"ok{batch}-{i}@localhost"], subject=f"m{batch}-{i}")
                for i in range(10)]
        wait_for(lambda: queue_empty(qm), 20, what="an empty queue")
    assert sorted(q for q, _, _, _ in delivered(qm)) == sorted(ids)
    for i, qid in enumerate(ids):
        stored = (qm.dir / "msgs" / f"{qid}.0").read_bytes()
        assert f"Subject: m{i // 10}-{i % 10}\n".encode() in stored and stored.endswith(b"\nHello.\n")
    assert 1 <= len(pool_files(qm)) <= 10


def test_start_sweeps_the_pool_and_recovers_committed_files(inst):
    # A complete file in pool/ is a message whose rename to incoming/ was
    # lost (power cut): it is queued again.  Spares from before the master
    # started are kept, renumbered above every name in use; anything that
    # is not a spare is removed.
    prepare(inst, qmgr=False)
    inst.start()
    qid = send(inst, "alice@example.org", ["ok-pool@localhost"], subject="recovered")
    inst.stop()
    q = inst.dir / "queue"
    os.rename(q / "incoming" / qid, q / "pool" / "7")
    (q / "pool" / "8").write_bytes(b"old spare")
    os.chmod(q / "pool" / "8", 0o600)
    owner = os.stat(q / "incoming")
    os.chown(q / "pool" / "8", owner.st_uid, owner.st_gid)
    spare = os.stat(q / "pool" / "8").st_ino
    (q / "pool" / "junk").write_bytes(b"not a spare")
    (q / "pool" / "3").mkdir()  # not a file: left alone, never handed out as a spare
    inst.write_master_cf(master_cf(inst))
    inst.start()
    wakeup(inst)
    m = wait_log(inst, r"pool/7: a committed message whose queue name was lost; queued again as ([0-9A-V]{16})")
    new = m[0]
    wait_log(inst, rf"{new}: removed")
    assert [(x, a) for x, a, _, _ in delivered(inst)] == [(new, "ok-pool@localhost")]
    assert b"Subject: recovered\n" in (inst.dir / "msgs" / f"{new}.0").read_bytes()
    # The spare was numbered 9 and is the first one the next message takes.
    assert "junk" not in os.listdir(q / "pool")
    assert (q / "pool" / "3").is_dir()
    qid = send(inst, "alice@example.org", ["ok-next@localhost"], subject="next")
    wait_log(inst, rf"{qid}: removed")
    stored = (inst.dir / "msgs" / f"{qid}.0").read_bytes()
    assert b"Subject: next\n" in stored and b"old spare" not in stored
    assert spare in [x.st_ino for x in pool_files(inst).values()]

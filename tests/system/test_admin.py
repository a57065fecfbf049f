"""The queue administrator's tools against a queue with deferred, held and
active mail: mailq (postern queue, sendmail -bp, showq), postern super
(-d, -h, -H, -r, -s), postern flush, postern check -f, and the install
step "postern setup --replace-sendmail" into a throwaway root.

The instance runs smtpd, cleanup, qmgr, pickup and showq for real, and
tests/fakeagent as the local transport (it sleeps 3 seconds for a
recipient whose local part starts with "slow", which keeps a message in
active/ long enough to look at).  Mail for nowhere.example goes to a
transport that does not exist, so qmgr defers it with a clear reason;
deferred mail is retried only when a test asks.
"""
import json
import os
import pathlib
import pwd
import re
import shutil
import smtplib
import stat
import subprocess
import tempfile
import time

import pytest

from instance import run, wait_for
from mail import queue

ROOT = os.geteuid() == 0
NOWHERE = "inline:{nowhere.example=nosuch:}"
REASON = "mail transport unavailable: private/nosuch: No such file or directory"
ID_RX = r"[0-9A-V]{16}"


def master_cf(inst):
    fake = inst.build / "tests" / "fakeagent"
    return "\n".join([
        f"127.0.0.1:{inst.ports[0]}   inet  n  -  n  -  -  smtpd",
        "cleanup  unix  -  -  n  -  0  cleanup",
        "anvil    unix  -  -  n  -  1  anvil",
        "qmgr     unix  n  -  n  300  1  qmgr",
        "pickup   unix  n  -  n  60  1  pickup",
        "showq    unix  n  -  n  -  -  showq",
        # One delivery at a time: a message with several slow recipients stays active for a while.
        f"local    unix  -  -  n  -  1  {fake} {inst.dir / 'delivered.log'}",
    ]) + "\n"


@pytest.fixture
def adm(inst):
    if not (inst.build / "tests" / "fakeagent").exists():
        pytest.skip("tests/fakeagent not built")
    log = inst.dir / "delivered.log"
    log.touch()
    os.chmod(log, 0o666)
    inst.conf(queue_run_delay="1s", minimal_backoff_time="3600s", maximal_backoff_time="7200s",
              transport_maps=NOWHERE, smtpd_error_sleep_time="0", local_recipient_maps="")
    inst.write_master_cf(master_cf(inst))
    inst.start()
    yield inst


def send(inst, rcpts, subject="test", sender="alice@example.org"):
    msg = f"From: <{sender}>\r\nSubject: {subject}\r\n\r\nHello.\r\n"
    with smtplib.SMTP("127.0.0.1", inst.ports[0], timeout=30) as s:
        code, resp = s.mail(sender)
        assert code == 250, resp
        for r in rcpts:
            code, resp = s.rcpt(r)
            assert code == 250, (r, resp)
        code, resp = s.data(msg)
        assert code == 250, resp
    return re.search(rb"queued as (" + ID_RX.encode() + rb")", resp).group(1).decode()


def where(inst, qid):
    """{queue_id: queue_name} from postern queue -j."""
    return {m["queue_id"]: m["queue_name"] for m in queue(inst)}.get(qid)


def wait_in(inst, qid, name, timeout=30):
    return wait_for(lambda: where(inst, qid) == name, timeout, what=f"{qid} in {name}/")


def wait_log(inst, pattern, timeout=30):
    rx = re.compile(pattern)
    return wait_for(lambda: rx.search(inst.log()), timeout, what=f"/{pattern}/ in the maillog")


def delivered(inst):
    return [line.split()[:2] for line in (inst.dir / "delivered.log").read_text().splitlines()]


def super_(inst, *args, input=None):
    return inst.cmd("super", *args, input=input)


def deferred_one(inst, rcpt="bob@nowhere.example", subject="deferred"):
    qid = send(inst, [rcpt], subject)
    wait_in(inst, qid, "deferred")
    return qid


# ---------------------------------------------------------------- listing


def test_mailq_shape_and_json(adm):
    d = deferred_one(adm)
    h = deferred_one(adm, "carol@nowhere.example", "held")
    assert super_(adm, "-h", h).returncode == 0
    a = send(adm, ["slow1@localhost", "slow2@localhost", "slow3@localhost", "slow4@localhost"], "active")
    wait_in(adm, a, "active")

    proc = adm.cmd("queue")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    lines = text.splitlines()
    assert lines[0] == "-Queue ID-        --Size-- ----Arrival Time---- -Sender/Recipient-------"
    assert re.search(rf"^{d}  +\d+ \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d:\d\d  alice@example\.org$", text, re.M), text
    assert re.search(rf"^{h}! +\d+ .* alice@example\.org$", text, re.M), text
    assert re.search(rf"^{a}\* +\d+ .* alice@example\.org$", text, re.M), text
    assert re.search(r"^ {42}\(" + re.escape(REASON) + r"\)$", text, re.M), text
    assert re.search(r"^ {48}bob@nowhere\.example$", text, re.M), text
    assert lines[-1] == "-- 1 Kbytes in 3 Requests."
    # Messages are listed oldest first, each followed by an empty line.
    ids = re.findall(rf"^({ID_RX})", text, re.M)
    assert ids == sorted([d, h, a])

    msgs = [json.loads(line) for line in adm.cmd("queue", "-j").stdout.splitlines()]
    by = {m["queue_id"]: m for m in msgs}
    assert by[d]["queue_name"] == "deferred" and by[h]["queue_name"] == "hold" and by[a]["queue_name"] == "active"
    assert by[d]["recipients"] == [{"address": "bob@nowhere.example", "done": False, "delay_reason": REASON}]
    assert by[d]["next_retry_time"] > time.time() + 1800  # minimal_backoff_time
    assert "next_retry_time" not in by[h]
    assert abs(by[d]["arrival_time"] - time.time()) < 600
    assert by[d]["message_size"] > 0

    # sendmail -bp as root is the same listing; showq (postdrop -p) too.
    sm = subprocess.run([str(adm.build / "cli" / "sendmail"), "-bp"], capture_output=True, text=True,
                        env={**os.environ, "POSTERN_CONFIG_DIR": str(adm.dir)}, timeout=60)
    assert sm.returncode == 0, sm.stderr
    pd = run([adm.build / "cli" / "postdrop", "-c", adm.dir, "-p"])
    assert pd.returncode == 0, pd.stderr
    pj = run([adm.build / "cli" / "postdrop", "-c", adm.dir, "-p", "-j"])
    assert pj.returncode == 0, pj.stderr
    for other in (sm.stdout, pd.stdout):
        assert re.findall(rf"^({ID_RX}.) ", other, re.M) == re.findall(rf"^({ID_RX}.) ", text, re.M)
        assert other.splitlines()[-1] == lines[-1]
    assert {m["queue_id"] for m in map(json.loads, pj.stdout.splitlines())} == {d, h, a}


def test_showq_protocol_edges(adm):
    import ipcwire

    path = adm.dir / "queue" / "public" / "showq"
    wait_for(path.exists, 10, what="public/showq")
    c = ipcwire.Conn(path, 10)
    assert dict(c.read_list()) == {"protocol": b"showq", "version": b"1"}
    c.send(ipcwire.encode([("format", "xml")]))
    assert dict(c.read_list())["status"] == b"5"
    assert c.closed_by_peer(10)
    c.close()
    # An unknown attribute is refused too.
    c = ipcwire.Conn(path, 10)
    c.read_list()
    c.send(ipcwire.encode([("user", "root")]))
    assert dict(c.read_list())["status"] == b"5"
    c.close()
    # The JSON listing, framed, ends with an empty frame.
    d = deferred_one(adm)
    c = ipcwire.Conn(path, 10)
    c.read_list()
    c.send(ipcwire.encode([("format", "json")]))
    assert dict(c.read_list())["status"] == b"0"
    data = c.pending
    while not data.endswith(b"\n0\n"):
        more = c.sock.recv(65536)
        assert more, data
        data += more
    c.close()
    head, rest = data.split(b"\n", 1)
    assert int(head) == len(rest) - 2
    assert json.loads(rest[:-2])["queue_id"] == d
    # A client that says nothing is dropped in time; showq keeps serving.
    c = ipcwire.Conn(path, 10)
    c.read_list()
    c.close()
    assert d in run([adm.build / "cli" / "postdrop", "-c", adm.dir, "-p"]).stdout


# ---------------------------------------------------------------- super


def test_super_hold_release_delete(adm):
    q1 = deferred_one(adm)
    q2 = deferred_one(adm, "dave@nowhere.example")
    proc = super_(adm, "-h", q1)
    assert proc.returncode == 0, proc.stderr
    assert "Placed on hold: 1 message" in proc.stderr
    assert where(adm, q1) == "hold"
    assert (adm.dir / "queue" / "hold" / q1).exists()
    wait_log(adm, rf"postern/super\[\d+\]: {q1}: placed on hold")
    # Held mail is not retried by a flush.
    n = adm.log().count(f"{q1}: to=<bob@nowhere.example>")
    assert adm.cmd("flush").returncode == 0
    wait_log(adm, rf"{q2}: to=<dave@nowhere.example>, .*status=deferred.*\n(.*\n)*.*{q2}: to=<dave", timeout=30)
    assert adm.log().count(f"{q1}: to=<bob@nowhere.example>") == n

    # Release: back to deferred/, due at once, tried again.
    proc = super_(adm, "-H", q1)
    assert proc.returncode == 0, proc.stderr
    wait_log(adm, rf"postern/super\[\d+\]: {q1}: released from hold")
    wait_for(lambda: adm.log().count(f"{q1}: to=<bob@nowhere.example>") > n, 30, what="a retry after release")
    wait_in(adm, q1, "deferred")

    # Delete: the queue file and the defer log go; nothing else does.
    defer_log = adm.dir / "queue" / "defer" / q1[10] / q1
    assert defer_log.exists()
    proc = super_(adm, "-d", q1)
    assert proc.returncode == 0, proc.stderr
    assert "Deleted: 1 message" in proc.stderr
    wait_log(adm, rf"postern/super\[\d+\]: {q1}: removed")
    assert where(adm, q1) is None and where(adm, q2) == "deferred"
    assert not defer_log.exists()
    # Gone is gone: a second delete reports it.
    proc = super_(adm, "-d", q1)
    assert proc.returncode == 1 and "no such message" in proc.stderr

    # IDs from standard input, and names that are not IDs.
    proc = super_(adm, "-h", "-", input=f"{q2}\n\n")
    assert proc.returncode == 0, proc.stderr
    assert where(adm, q2) == "hold"
    proc = super_(adm, "-d", "../../etc/passwd")
    assert proc.returncode == 2 and "not a queue ID" in proc.stderr
    proc = super_(adm, "-d", "-", input="../hold/x\n")
    assert proc.returncode == 1 and "not a queue ID" in proc.stderr
    proc = super_(adm, "-d", "ALL", "hold")
    assert proc.returncode == 0, proc.stderr
    assert queue(adm) == []


def test_super_requeue_after_transport_change(adm):
    qid = deferred_one(adm, "ok1@nowhere.example")
    # The admin fixes the routing; the deferred message still has its old next-attempt time.
    adm.conf(transport_maps="inline:{nowhere.example=local:}")
    adm.reload()
    time.sleep(2)
    assert where(adm, qid) == "deferred"
    proc = super_(adm, "-r", qid)
    assert proc.returncode == 0, proc.stderr
    wait_log(adm, rf"postern/super\[\d+\]: {qid}: requeued")
    wait_log(adm, rf"{qid}: to=<ok1@nowhere\.example>, relay=fake, .*status=sent")
    assert [qid, "ok1@nowhere.example"] in delivered(adm)
    wait_for(lambda: where(adm, qid) is None, 20, what="the message gone")


def test_super_refuses_active_while_qmgr_runs(adm):
    a = send(adm, ["slow1@localhost", "slow2@localhost", "slow3@localhost", "slow4@localhost"], "active")
    wait_in(adm, a, "active")
    for opt in ("-d", "-h", "-r"):
        proc = super_(adm, opt, a)
        assert proc.returncode == 1, proc.stderr
        assert f"{a} is being delivered; try again" in proc.stderr
    assert (adm.dir / "queue" / "active" / a).exists()
    # Delivery finishes as if nothing happened.
    wait_log(adm, rf"{a}: removed", timeout=60)
    assert sorted(addr for q, addr in delivered(adm) if q == a) == [f"slow{i}@localhost" for i in range(1, 5)]


def test_super_handles_active_when_qmgr_is_down(adm):
    qid = deferred_one(adm)
    assert adm.stop().returncode == 0
    src = adm.dir / "queue" / "deferred" / qid[10] / qid
    dst = adm.dir / "queue" / "active" / qid
    os.rename(src, dst)  # what a qmgr killed in the middle of an attempt leaves
    proc = super_(adm, "-h", qid)
    assert proc.returncode == 0, proc.stderr
    assert (adm.dir / "queue" / "hold" / qid).exists() and not dst.exists()
    adm.start()
    time.sleep(2)
    assert where(adm, qid) == "hold"


def test_super_repair(adm):
    q = adm.dir / "queue"
    d1 = deferred_one(adm)
    d2 = deferred_one(adm, "erin@nowhere.example")
    assert adm.stop().returncode == 0
    # d1 in the wrong hash subdirectory, d2 complete but with mode 0644.
    wrong = "0" if d1[10] != "0" else "1"
    os.rename(q / "deferred" / d1[10] / d1, q / "deferred" / wrong / d1)
    os.chmod(q / "deferred" / d2[10] / d2, 0o644)
    # Debris: a name that is no queue ID, a symbolic link, a stale temporary file, a truncated file.
    (q / "hold" / "not-an-id").write_bytes(b"junk")
    os.symlink("/etc/shadow", q / "incoming" / "1LG5AAAAAA000009")
    stale = q / "incoming" / "1LG5AAAAAA00000A"
    stale.write_bytes(b"V")
    os.chmod(stale, 0o600)
    two_days = time.time() - 2 * 86400
    os.utime(stale, (two_days, two_days))
    fresh = q / "incoming" / "1LG5AAAAAA00000B"
    fresh.write_bytes(b"V")
    os.chmod(fresh, 0o600)
    truncated = q / "hold" / "1LG5AAAAAA00000C"
    truncated.write_bytes(b"V\x10short")
    os.chmod(truncated, 0o644)
    # A defer log whose message is long gone.
    orphan = q / "defer" / "0" / "1LG5AAAAAA00000D"
    orphan.write_text("x\n")
    os.utime(orphan, (two_days, two_days))
    # A queue directory with the wrong mode.
    os.chmod(q / "hold", 0o755)
    if ROOT:
        os.chown(q / "deferred" / wrong / d1, pwd.getpwnam("nobody").pw_uid, -1)

    proc = super_(adm, "-s")
    assert proc.returncode == 0, proc.stderr
    log = adm.log()
    assert (q / "deferred" / d1[10] / d1).exists()
    assert f"deferred/{wrong}/{d1}: moved to deferred/{d1[10]}/{d1}" in log
    assert stat.S_IMODE((q / "deferred" / d2[10] / d2).stat().st_mode) == 0o700
    assert not (q / "hold" / "not-an-id").exists() and "hold/not-an-id: not a queue ID; moved to corrupt/" in log
    assert not os.path.lexists(q / "incoming" / "1LG5AAAAAA000009")
    assert not stale.exists() and "removed stale temporary file" in log
    assert fresh.exists()  # a writer may still be busy with it
    assert not truncated.exists() and "hold/1LG5AAAAAA00000C: " in log
    assert (q / "corrupt" / "1LG5AAAAAA00000C").exists()  # under its own ID
    assert not orphan.exists() and "defer/0/1LG5AAAAAA00000D: removed (the message is no longer queued)" in log
    assert stat.S_IMODE((q / "hold").stat().st_mode) == 0o700
    if ROOT:
        st = (q / "deferred" / d1[10] / d1).stat()
        assert st.st_uid == pwd.getpwnam(adm.cmd("conf", "-h", "mail_owner").stdout.strip()).pw_uid
    # Both messages are whole and listed again; a second run finds nothing to do.
    assert {m["queue_id"] for m in queue(adm)} == {d1, d2}
    before = adm.log()
    proc = super_(adm, "-s")
    assert proc.returncode == 0, proc.stderr
    assert adm.log()[len(before):].count("postern/super") == 0
    fresh.unlink()


# ---------------------------------------------------------------- flush


def test_flush_all_site_and_one(adm):
    q1 = deferred_one(adm, "ok1@nowhere.example")
    q2 = deferred_one(adm, "ok2@elsewhere.example")
    q3 = deferred_one(adm, "ok3@nowhere.example")
    adm.conf(transport_maps="inline:{nowhere.example=local:, elsewhere.example=local:}")
    adm.reload()
    time.sleep(2)
    assert {where(adm, q) for q in (q1, q2, q3)} == {"deferred"}
    # One message.
    proc = adm.cmd("flush", "-i", q1)
    assert proc.returncode == 0, proc.stderr
    wait_log(adm, rf"{q1}: to=<ok1@nowhere\.example>, relay=fake, .*status=sent")
    time.sleep(1)
    assert where(adm, q2) == "deferred" and where(adm, q3) == "deferred"
    # One site.
    proc = adm.cmd("queue", "-s", "nowhere.example")
    assert proc.returncode == 0, proc.stderr
    assert "1 deferred message for nowhere.example" in proc.stdout
    wait_log(adm, rf"{q3}: to=<ok3@nowhere\.example>, relay=fake, .*status=sent")
    assert where(adm, q2) == "deferred"
    # Everything.
    proc = adm.cmd("flush")
    assert proc.returncode == 0, proc.stderr
    wait_log(adm, rf"{q2}: to=<ok2@elsewhere\.example>, relay=fake, .*status=sent")
    wait_for(lambda: queue(adm) == [], 20, what="an empty queue")
    proc = adm.cmd("flush", "-i", q2)
    assert proc.returncode == 1 and "no such message" in proc.stderr
    proc = adm.cmd("flush", "-i", "x/../y")
    assert proc.returncode == 1 and "not a queue ID" in proc.stderr


# ---------------------------------------------------------------- check -f


def test_check_finds_and_fixes_permissions(adm):
    assert adm.cmd("check").returncode == 0
    os.chmod(adm.dir / "main.cf", 0o666)
    os.chmod(adm.dir / "queue" / "maildrop", 0o1777)
    os.chmod(adm.dir / "queue" / "deferred" / "7", 0o755)
    proc = adm.cmd("check")
    assert proc.returncode == 1
    assert "main.cf: mode 0666 is writable by everybody" in proc.stderr
    assert "maildrop: mode 1777, should be 1730" in proc.stderr
    assert "deferred/7: mode 0755, should be 0700" in proc.stderr
    proc = adm.cmd("check", "-f")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((adm.dir / "main.cf").stat().st_mode) == 0o644
    assert stat.S_IMODE((adm.dir / "queue" / "maildrop").stat().st_mode) == 0o1730
    assert adm.cmd("check").returncode == 0


@pytest.mark.skipif(not ROOT, reason="needs root: set-group-id postdrop and system users")
def test_check_postdrop_setgid(inst, tmp_path):
    cmd_dir = tmp_path / "sbin"
    cmd_dir.mkdir()
    shutil.copy2(inst.build / "cli" / "postdrop", cmd_dir / "postdrop")
    os.chmod(cmd_dir / "postdrop", 0o755)
    inst.conf(command_directory=str(cmd_dir))
    proc = inst.cmd("check")
    assert proc.returncode == 1
    assert re.search(r"postdrop: owner 0:0 mode 0755, should be root:\S+ mode 2755", proc.stderr), proc.stderr
    assert inst.cmd("check", "-f").returncode == 0
    st = (cmd_dir / "postdrop").stat()
    assert stat.S_IMODE(st.st_mode) == 0o2755 and st.st_gid != 0


# ---------------------------------------------------------------- installation


def test_install_and_replace_sendmail_into_a_throwaway_root(postern, tmp_path):
    if not ROOT:
        pytest.skip("postern setup needs root")
    build = pathlib.Path(postern).resolve().parents[1]
    if not (build / "Makefile").exists():
        pytest.skip("not a configured build tree")
    host_sendmail = pathlib.Path("/usr/sbin/sendmail")
    host_before = os.lstat(host_sendmail) if os.path.lexists(host_sendmail) else None
    dest = pathlib.Path(tempfile.mkdtemp(prefix="postern-destdir-", dir="/tmp"))
    try:
        proc = run(["make", "-C", build, "install", f"DESTDIR={dest}"], timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        env = {k: v for k, v in os.environ.items() if k != "POSTERN_CONFIG_DIR"}
        cmd_dir = run([postern, "conf", "-d", "-h", "command_directory"], env=env, check=True).stdout.strip()
        pkgdata = list(dest.rglob("share/postern"))
        assert pkgdata, "no package data directory"
        for name in ("main.cf", "master.cf", "postern.service", "postern.logrotate"):
            assert (pkgdata[0] / name).exists(), name
        assert list(dest.rglob("man8/showq.8")) and list(dest.rglob("man1/mailq.1"))
        assert list(dest.rglob("libexec/postern/showq")) or list(dest.rglob("showq"))
        installed = dest / cmd_dir.lstrip("/")
        for name in ("postern", "sendmail", "postdrop"):
            assert (installed / name).exists(), name
        # The root's own sendmail, as another MTA would have left it.
        (dest / "usr" / "sbin").mkdir(parents=True, exist_ok=True)
        (dest / "usr" / "bin").mkdir(parents=True, exist_ok=True)
        (dest / "usr" / "sbin" / "sendmail").write_text("#!/bin/sh\necho other mta\n")
        for _ in range(2):  # twice: the step is idempotent
            proc = run([installed / "postern", "setup", "--replace-sendmail", "--root", dest], env=env)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        st = (installed / "postdrop").stat()
        assert stat.S_IMODE(st.st_mode) == 0o2755 and st.st_uid == 0 and st.st_gid != 0
        for link in ("usr/sbin/sendmail", "usr/bin/mailq", "usr/bin/newaliases"):
            assert os.readlink(dest / link) == f"{cmd_dir}/sendmail", link
        assert (dest / "usr" / "sbin" / "sendmail.postern-orig").read_text().startswith("#!/bin/sh")
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    # The machine's own sendmail (Debian's postfix) was never touched.
    if host_before is not None:
        after = os.lstat(host_sendmail)
        assert (after.st_ino, after.st_mtime_ns, after.st_mode) == (host_before.st_ino, host_before.st_mtime_ns,
                                                                   host_before.st_mode)
    else:
        assert not os.path.lexists(host_sendmail)

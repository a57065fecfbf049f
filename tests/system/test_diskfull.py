"""Full file systems: the queue and the mailboxes on small tmpfs mounts.

Each test mounts a tmpfs of a few megabytes made for it (root only; the
tests skip otherwise) over the instance's queue or mailbox directory,
copies the tree postern init made into it, fills it with a filler file,
and checks what a client and a user see:

- queue full: smtpd answers 452 4.3.1 instead of 250, cleanup says why
  in the log, no queue file is left half-written, and mail flows again
  as soon as the filler is gone;
- mailbox full: the delivery is deferred (never bounced, never lost) and
  arrives once there is room again.

The mounts are undone in teardown whatever happened.
"""
import os
import re
import shutil
import subprocess
import time

import pytest

from instance import wait_for
from mail import Raw, queue

ROOT = os.geteuid() == 0
DEMO = "demo@example.test"

pytestmark = pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")


class Tmpfs:
    """A tmpfs mounted over path, holding a copy of what was there."""

    def __init__(self, path, size="2m"):
        self.path = str(path)
        st = os.stat(self.path)
        self.saved = self.path + ".saved"
        shutil.move(self.path, self.saved)
        os.mkdir(self.path)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode={st.st_mode & 0o7777:o}",
                               "tmpfs", self.path], capture_output=True, text=True)
        if proc.returncode != 0:
            os.rmdir(self.path)
            shutil.move(self.saved, self.path)
            pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
        os.chown(self.path, st.st_uid, st.st_gid)
        subprocess.run(["cp", "-a", self.saved + "/.", self.path], check=True)
        self.filler = os.path.join(self.path, "filler")

    def fill(self, leave=0):
        """Fill the file system, leaving about `leave` bytes free."""
        with open(self.filler, "ab") as f:
            chunk = b"\0" * 65536
            try:
                while True:
                    free = os.statvfs(self.path)
                    avail = free.f_bavail * free.f_frsize
                    if avail <= leave:
                        break
                    f.write(chunk[:max(4096, min(len(chunk), avail - leave))])
                    f.flush()
            except OSError:
                pass

    def free(self):
        try:
            os.unlink(self.filler)
        except FileNotFoundError:
            pass

    def umount(self):
        for _ in range(50):
            if subprocess.run(["umount", self.path], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", self.path], capture_output=True)
        os.rmdir(self.path)
        shutil.move(self.saved, self.path)


@pytest.fixture
def small_queue(inst):
    fs = Tmpfs(inst.dir / "queue")
    inst.smtp = inst.ports[0]
    inst.conf(smtpd_error_sleep_time="0")
    try:
        inst.start()
        yield inst, fs
    finally:
        inst.cleanup()
        fs.umount()


@pytest.fixture
def small_mailbox(inst):
    fs = Tmpfs(inst.dir / "mail")
    inst.smtp = inst.ports[0]
    inst.conf(smtpd_error_sleep_time="0", minimal_backoff_time="1s", maximal_backoff_time="2s")
    try:
        inst.start()
        yield inst, fs
    finally:
        inst.cleanup()
        fs.umount()


def transaction(inst, body, rcpt=DEMO):
    """One message over raw SMTP; the reply to the end of data as (code, text)."""
    r = Raw(inst.smtp, timeout=60)
    try:
        assert r.reply()[0] == 220
        assert r.cmd("EHLO client.example")[0] == 250
        assert r.cmd("MAIL FROM:<sender@example.org>")[0] == 250
        assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        r.send(body.replace(b"\n", b"\r\n") + b".\r\n")
        code, lines = r.reply()
        r.cmd("QUIT")
        return code, lines[-1]
    finally:
        r.close()


def queue_files(inst):
    """Every file under the queue's message directories (complete or not)."""
    out = []
    for sub in ("incoming", "active", "deferred", "hold", "corrupt"):
        for dirpath, _, files in os.walk(inst.dir / "queue" / sub):
            out += [os.path.join(dirpath, f) for f in files]
    return out


def maildir_new(inst):
    d = inst.dir / "mail" / "example.test" / "demo" / "new"
    return sorted(os.listdir(d)) if d.exists() else []


def test_full_queue_gives_452_and_leaves_nothing(small_queue):
    inst, fs = small_queue
    # Mail flows while there is room.
    code, text = transaction(inst, b"Subject: before\n\nroom\n")
    assert code == 250, text
    wait_for(lambda: len(maildir_new(inst)) == 1, 30, what="the first delivery")

    # No room at all.  The first message's queue file is kept as a spare
    # (common/qpool.h) and still has its one block: a message that needs
    # more than that.
    fs.fill()
    code, text = transaction(inst, b"Subject: small\n\n" + b"no room\n" * 2000)
    assert code == 452, text
    assert text.startswith("452 4.3.1 "), text
    assert "nsufficient system storage" in text, text

    # A little room, a message bigger than it: the write fails part way.
    fs.free()
    fs.fill(leave=256 * 1024)
    big = b"Subject: big\n\n" + (b"x" * 76 + b"\n") * 12000  # ~900 KB
    code, text = transaction(inst, big)
    assert code == 452, text
    assert text.startswith("452 4.3.1 "), text
    wait_for(lambda: queue_files(inst) == [], 10, what="no queue file left behind")
    assert re.search(r"[0-9A-V]{16}: .*(No space left on device)", inst.log()), inst.log()[-2000:]
    assert re.search(r"reject: 4\.3\.1 ", inst.log()), inst.log()[-2000:]

    # Room again: the same message is accepted and delivered.
    fs.free()
    code, text = transaction(inst, big)
    assert code == 250, text
    wait_for(lambda: len(maildir_new(inst)) == 2, 30, what="the big message delivered")
    wait_for(lambda: queue(inst) == [], 20, what="an empty queue")
    assert "status=bounced" not in inst.log()


def test_full_mailbox_defers_then_delivers(small_mailbox):
    inst, fs = small_mailbox
    code, text = transaction(inst, b"Subject: first\n\nmakes the Maildir\n")
    assert code == 250, text
    wait_for(lambda: len(maildir_new(inst)) == 1, 30, what="the first delivery")

    fs.fill()
    body = b"Subject: waits\n\n" + b"y" * 200000 + b"\n"
    code, text = transaction(inst, body)
    assert code == 250, text
    wait_for(lambda: re.search(r"to=<demo@example\.test>.*dsn=4\.\d\.\d, status=deferred", inst.log()), 30,
             what="a deferral")
    assert len(queue(inst)) == 1
    assert len(maildir_new(inst)) == 1
    tmp = inst.dir / "mail" / "example.test" / "demo" / "tmp"
    assert os.listdir(tmp) == [], "a half-written file stayed in tmp/"
    assert "status=bounced" not in inst.log()

    fs.free()
    inst.cmd("flush")
    wait_for(lambda: len(maildir_new(inst)) == 2, 60, interval=0.5, what="the deferred message delivered")
    wait_for(lambda: queue(inst) == [], 20, what="an empty queue")
    delivered = [open(os.path.join(inst.dir / "mail" / "example.test" / "demo" / "new", f), "rb").read()
                 for f in maildir_new(inst)]
    assert any(d.endswith(b"y" * 200000 + b"\n") for d in delivered)
    assert "status=bounced" not in inst.log()

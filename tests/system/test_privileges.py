"""The privilege audit (root only): every process of a running instance,
with every service active, has the identity DESIGN.md gives it.

    master                        root
    smtpd, smtp, pop3d (login)    network_user, chroot queue_directory
    cleanup, qmgr, pickup,        mail_owner
    auth, anvil, showq
    local                         root between deliveries (it switches to
                                  the recipient for each one)
    pop3d-mailbox                 root while idle, the mailbox owner
                                  during a session

For each process: real/effective/saved/filesystem uid and gid, no
supplementary groups, the root directory (/proc/PID/root: the chroot)
and the effective capabilities (none for anything not running as
root).  Then two proofs by trying: the network user inside smtpd's
chroot cannot open, or even list, a queue file; and pop3d's login
user cannot open a Maildir file.
"""
import grp
import os
import pwd
import re
import socket
import smtplib
import time

import pytest

import ipcwire
from instance import proc_children, wait_for
from mail import Raw, demo_password, queue, tls_client_context

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the privilege audit needs root")

DEMO = "demo@example.test"
NETWORK = {"smtpd", "smtp", "pop3d"}
QUEUE_OWNER = {"cleanup", "qmgr", "pickup", "auth", "anvil", "showq"}
ROOTS = {"local", "pop3d-mailbox"}


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def title(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[0].decode(errors="replace")


def descendants(pid):
    """Every process below pid (a pop3d-mailbox session is a child of its service process)."""
    out, todo = [], [pid]
    while todo:
        for child in proc_children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def conf(inst, name):
    return inst.cmd("conf", "-h", name).stdout.strip()


@pytest.fixture
def busy(inst):
    """An instance with every service running, connections held open."""
    smtp = (inst.build / "libexec" / "smtp").exists()
    if smtp:
        cf = inst.dir / "master.cf"
        lines = [ln for ln in cf.read_text().splitlines(True) if not re.match(r"#?smtp\s+unix", ln)]
        cf.write_text("".join(lines) + "smtp unix - - y - - smtp\n")
    if (inst.build / "libexec" / "showq").exists() and "showq" not in (inst.dir / "master.cf").read_text():
        with open(inst.dir / "master.cf", "a") as f:
            f.write("showq unix n - n - - showq\n")
    inst.conf(smtpd_error_sleep_time="0", relayhost="[127.0.0.1]:9")  # relayed mail defers: smtp runs
    inst.start()
    held = []
    # Mail through cleanup, qmgr and local; one for the smtp client (it defers).
    with smtplib.SMTP("127.0.0.1", inst.ports[0], timeout=60) as s:
        s.sendmail("a@example.org", [DEMO], "Subject: audit\r\n\r\nx\r\n")
        if smtp:
            s.sendmail("a@example.org", ["someone@remote.test"], "Subject: relay\r\n\r\nx\r\n")
    md = inst.dir / "mail" / "example.test" / "demo" / "new"
    wait_for(lambda: md.exists() and os.listdir(md), 30, what="a delivery")
    # Sessions held open: smtpd on all three ports, an authenticated one, a POP3 session.
    for port in inst.ports[:2]:
        r = Raw(port)
        r.reply()
        r.cmd("EHLO audit")
        held.append(r)
    r = Raw(inst.ports[2], tls=True)
    r.reply()
    r.cmd("EHLO audit")
    held.append(r)
    s = smtplib.SMTP("127.0.0.1", inst.ports[1], timeout=60)
    s.starttls(context=tls_client_context())
    s.login(DEMO, demo_password(inst))
    held.append(s)
    import poplib

    p = poplib.POP3_SSL("127.0.0.1", inst.ports[4], context=tls_client_context(), timeout=60)
    p.user(DEMO)
    p.pass_(demo_password(inst))
    held.append(p)
    # Every unix service that is not running yet: a connection starts it.
    for sub in ("private", "public"):
        for name in os.listdir(inst.dir / "queue" / sub):
            path = inst.dir / "queue" / sub / name
            if not os.path.exists(path) or name.endswith(".key"):
                continue
            try:
                c = ipcwire.Conn(path, timeout=5)
                held.append(c)
            except OSError:
                pass
    time.sleep(1.5)
    yield inst
    for h in held:
        try:
            h.close()
        except Exception:  # noqa: BLE001 - the instance goes away anyway
            pass


def test_every_process_has_its_identity(busy):
    inst = busy
    net = pwd.getpwnam(conf(inst, "network_user"))
    owner = pwd.getpwnam(conf(inst, "mail_owner"))
    text = (inst.dir / "main.cf").read_text()
    vuid = int(re.search(r"^virtual_uid_maps = static:(\d+)", text, re.M).group(1))
    vgid = int(re.search(r"^virtual_gid_maps = static:(\d+)", text, re.M).group(1))
    queue_dir = str(inst.dir / "queue")
    master = inst.master_pid()

    st = status(master)
    assert st["Uid"] == ["0"] * 4, st["Uid"]
    seen = {}
    report = []
    for pid in descendants(master):
        try:
            name = title(pid).split(":", 1)[0]
            st = status(pid)
            root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue  # gone in the meantime
        seen.setdefault(name, []).append(pid)
        uids, gids, groups = st["Uid"], st["Gid"], st.get("Groups", [])
        cap = int(st["CapEff"][0], 16)
        report.append(f"{name}[{pid}] uid={uids[0]} gid={gids[0]} groups={groups} root={root} capeff={cap:x}")
        if name in NETWORK:
            assert uids == [str(net.pw_uid)] * 4 and gids == [str(net.pw_gid)] * 4, (name, uids, gids)
            assert root == queue_dir, (name, root)
        elif name in QUEUE_OWNER:
            assert uids == [str(owner.pw_uid)] * 4 and gids == [str(owner.pw_gid)] * 4, (name, uids, gids)
            assert root == "/", (name, root)
        elif name == "local":
            assert uids[0] == "0" and root == "/", (name, uids)
        elif name == "pop3d-mailbox":
            assert uids in (["0"] * 4, [str(vuid)] * 4), (name, uids)
            if uids[0] != "0":
                assert gids == [str(vgid)] * 4, (name, gids)
        else:
            raise AssertionError(f"a process DESIGN.md does not list: {name}[{pid}] {title(pid)!r}")
        assert groups == [], (name, groups)
        if uids[0] != "0":
            assert cap == 0, (name, st["CapEff"])
            assert int(st["CapPrm"][0], 16) == 0, (name, st["CapPrm"])
    print("\n".join(sorted(report)))
    for name in ("smtpd", "pop3d", "pop3d-mailbox", "cleanup", "qmgr", "local", "auth", "anvil", "pickup"):
        assert name in seen, (name, sorted(seen))
    # The POP3 session's mailbox part runs as the mailbox owner.
    assert any(status(p)["Uid"][0] == str(vuid) for p in seen["pop3d-mailbox"]), "no session as the mailbox owner"


def as_user(user, fn, chroot=None):
    """Run fn() in a child as user (optionally chrooted); its exit code: 0 when fn() returned True."""
    pw = pwd.getpwnam(user)
    child = os.fork()
    if child == 0:
        try:
            if chroot:
                os.chroot(chroot)
                os.chdir("/")
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            os._exit(0 if fn() else 1)
        except BaseException:
            os._exit(2)
    _, st = os.waitpid(child, 0)
    return os.WEXITSTATUS(st)


def cannot(fn):
    try:
        fn()
    except (PermissionError, FileNotFoundError):
        return True
    return False


def test_network_user_cannot_read_the_queue_or_a_mailbox(busy):
    inst = busy
    q = inst.dir / "queue"
    # Something in the queue: the relayed message waits in deferred/ (or active/).
    files = [os.path.relpath(os.path.join(d, f), q) for sub in ("incoming", "active", "deferred", "hold", "maildrop")
             for d, _, fs in os.walk(q / sub) for f in fs]
    if not files:
        # No smtp client: put one on hold by hand, as cleanup would write it.
        qid = "0000000000000000"
        (q / "incoming" / qid).write_bytes(b"V")
        os.chmod(q / "incoming" / qid, 0o700)
        os.chown(q / "incoming" / qid, pwd.getpwnam(conf(inst, "mail_owner")).pw_uid, -1)
        files = [f"incoming/{qid}"]
    net = conf(inst, "network_user")

    def probe():
        ok = all(cannot(lambda f=f: open(f, "rb").close()) for f in files)
        for sub in ("incoming", "active", "deferred", "hold", "corrupt", "bounce", "defer"):
            ok = ok and cannot(lambda s=sub: os.listdir(s))
        ok = ok and cannot(lambda: os.listdir("private")) and cannot(lambda: open("private/auth.key", "rb"))
        return ok

    assert as_user(net, probe, chroot=str(q)) == 0, files
    # The same without the chroot, against the mailboxes.
    md = inst.dir / "mail" / "example.test" / "demo"
    mails = [str(md / "new" / f) for f in os.listdir(md / "new")]
    assert mails
    assert as_user(net, lambda: all(cannot(lambda m=m: open(m, "rb").close()) for m in mails)
                   and cannot(lambda: os.listdir(md))) == 0
    # And the queue owner (cleanup, qmgr) cannot read a mailbox either.
    assert as_user(conf(inst, "mail_owner"), lambda: all(cannot(lambda m=m: open(m, "rb").close())
                                                          for m in mails)) == 0

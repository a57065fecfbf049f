"""local, the delivery agent, driven directly: the tests play qmgr.

Each test starts an instance (postern init) whose master.cf runs smtpd,
cleanup, auth, anvil and local, and no qmgr, so injected mail stays in
queue/incoming.  The test then does what qmgr does (doc/ipc.md 8.3):
connects to queue/private/local, reads the greeting, sends the request
list, passes the queue file as a descriptor, and reads one status per
recipient until "done".  Recipient offsets come from parsing the queue
file here from doc/queue-format.md alone, which also shows the document
is enough to read one.  What is checked is what a user or an admin sees:
the bytes in the Maildir or mbox, file names, owners and modes, the
status and reason, the log.

Run as root (CI), deliveries switch to the recipient: files belong to
the recipient and commands run as the right user.  Run as an ordinary
user, everything is delivered as that user and the uid checks are
skipped.
"""
import os
import pathlib
import pwd
import re
import smtplib
import socket
import stat
import time

import pytest

import ipcwire
from instance import wait_for
from ipcwire import encode

ROOT = os.geteuid() == 0
HOST = "mail.example.test"  # postern init's myhostname, in mydestination
SENDER = "sender@example.org"


# ---------------------------------------------------------------- queue files


def _varint(data, pos):
    n, shift = 0, 0
    for i in range(4):
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos
    raise ValueError("length longer than 4 bytes")


class QueueFile:
    """A queue file read from doc/queue-format.md: sender, recipients with
    the offsets of their records, the content."""

    def __init__(self, path):
        data = pathlib.Path(path).read_bytes()
        self.path = path
        self.sender = None
        self.rcpts = []  # (address, offset, orcpt, notify)
        self.attrs = {}
        self.arrival = 0
        content = []
        pos = 0
        while pos < len(data):
            start = pos
            rtype = chr(data[pos])
            n, pos = _varint(data, pos + 1)
            payload = data[pos:pos + n]
            pos += n
            if rtype == "T":
                self.arrival = int(payload.split(b".")[0])
            elif rtype == "S":
                self.sender = payload.decode("utf-8", "surrogateescape")
            elif rtype == "A":
                k, _, v = payload.partition(b"=")
                self.attrs.setdefault(k.decode(), v.decode("utf-8", "surrogateescape"))
            elif rtype in "RD":
                fields = payload.split(b"\0")
                orcpt = notify = None
                for f in fields[1:]:
                    if f.startswith(b"orcpt="):
                        orcpt = f[6:].decode()
                    elif f.startswith(b"notify="):
                        notify = f[7:].decode()
                self.rcpts.append((fields[0].decode("utf-8", "surrogateescape"), start, orcpt, notify))
            elif rtype == "C":
                content.append(payload)
            elif rtype == "E":
                assert pos == len(data), "data after E"
        assert data[:10] == b"V@POSTERN ", data[:10]
        self.content = b"".join(content)


# ---------------------------------------------------------------- cleanup (doc/ipc.md 8.1)


def submit(inst, rcpts, content, sender=SENDER):
    """Queue a message through cleanup; returns its queue ID."""
    c = ipcwire.Conn(inst.dir / "queue" / "private" / "cleanup", 20)
    try:
        greet = dict(c.read_list())
        assert greet["protocol"] == b"cleanup", greet
        pairs = [("sender", sender)] + [("rcpt", r) for r in rcpts]
        c.send(encode(pairs))
        for i in range(0, len(content), 65536):
            piece = content[i:i + 65536]
            c.send(b"%d\n" % len(piece) + piece)
        c.send(b"0\n")
        res = {k: v.decode() for k, v in c.read_list(60)}
    finally:
        c.close()
    assert res["status"] == "0", res
    return res["queue_id"]


def incoming(inst, qid):
    return inst.dir / "queue" / "incoming" / qid


def stored(lda, qid):
    """The content as cleanup stored it (it ends every message with a line end)."""
    return QueueFile(incoming(lda.inst, qid)).content


# ---------------------------------------------------------------- playing qmgr (doc/ipc.md 8.3)


def deliver(inst, qid, rcpts=None, timeout=60):
    """Hand local one request for the message; returns {address: (status, dsn, reason)}.

    rcpts: addresses to deliver (each must be a recipient of the file), or
    (address, offset) pairs to name a recipient record with another address;
    default: every recipient in the file."""
    q = QueueFile(incoming(inst, qid))
    if rcpts is None:
        todo = [(r[0], r[1], r[2], r[3]) for r in q.rcpts]
    else:
        todo = []
        for r in rcpts:
            if isinstance(r, tuple):
                todo.append((r[0], r[1], None, None))
            else:
                rec = next(x for x in q.rcpts if x[0] == r)
                todo.append(rec)
    c = ipcwire.Conn(inst.dir / "queue" / "private" / "local", timeout)
    try:
        greet = dict(c.read_list())
        assert greet["protocol"] == b"deliver" and int(greet["version"]) >= 1, greet
        pairs = [("queue_id", qid), ("sender", q.sender), ("transport", "local"), ("nexthop", HOST),
                 ("arrival", str(q.arrival)), ("flags", "0")]
        for addr, off, orcpt, notify in todo:
            pairs += [("rcpt", addr), ("offset", str(off))]
            if orcpt:
                pairs.append(("orcpt", orcpt))
            if notify:
                pairs.append(("notify", notify))
        c.send(encode(pairs))
        fd = os.open(incoming(inst, qid), os.O_RDONLY)
        try:
            socket.send_fds(c.sock, [b"F"], [fd])
        finally:
            os.close(fd)
        by_offset = {}
        while True:
            attrs = c.read_list(timeout)
            assert attrs is not None, "local closed the connection before done"
            d = dict(attrs)
            if "done" in d:
                break
            by_offset[int(d["offset"])] = (d["status"].decode(), d["dsn"].decode(),
                                           d["reason"].decode("utf-8", "replace"))
    finally:
        c.close()
    out = {}
    for addr, off, _, _ in todo:
        assert off in by_offset, f"no status for {addr}: {by_offset}"
        out[addr] = by_offset[off]
    return out


# ---------------------------------------------------------------- the instance


def system_users():
    """Two system users to deliver to: real ones as root, ourselves otherwise."""
    if ROOT:
        for name in ("daemon", "bin"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                pytest.skip(f"no system user {name}")
        return "daemon", "bin"
    me = pwd.getpwuid(os.getuid()).pw_name
    return me, me


def master_cf(inst):
    """postern init's master.cf with local enabled and nothing that would take the mail (qmgr)."""
    keep = []
    entry = []
    for line in (inst.dir / "master.cf").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace():
            entry.append(line)
            continue
        if entry:
            keep.append(entry)
        entry = [line]
    if entry:
        keep.append(entry)
    text = ""
    for e in keep:
        words = e[0].split()
        if words[1] == "inet" and words[-1] != "smtpd":
            continue
        if words[1] == "unix" and words[0] not in ("cleanup", "auth", "anvil"):
            continue
        text += "\n".join(e) + "\n"
    return text + "local unix - n n - - local\n"


class Lda:
    """An instance set up for local: spool, aliases, .forward directory, an output directory."""

    def __init__(self, inst):
        self.inst = inst
        self.dir = inst.dir
        self.spool = inst.dir / "spool"
        self.out = inst.dir / "out"
        self.fwd = inst.dir / "forward"
        self.aliases = inst.dir / "aliases.txt"
        self.vmailbox = inst.dir / "vmailbox.txt"
        self.u1, self.u2 = system_users()

    def start(self, aliases="", vmailbox=None, **conf):
        self.spool.mkdir(mode=0o755)
        self.out.mkdir()
        os.chmod(self.out, 0o1777)
        self.fwd.mkdir(mode=0o755)
        self.aliases.write_text(aliases.replace("OUT", str(self.out)))
        self.vmailbox.write_text(vmailbox or "demo@example.test example.test/demo/\n")
        self.inst.write_master_cf(master_cf(self.inst))
        params = dict(alias_maps=f"texthash:{self.aliases}", mail_spool_directory=str(self.spool),
                      forward_path=f"{self.fwd}/$user", recipient_delimiter="+",
                      virtual_mailbox_maps=f"texthash:{self.vmailbox}", smtpd_error_sleep_time="0")
        params.update(conf)
        self.inst.conf(**params)
        self.inst.start()
        return self

    def uid(self, user):
        return pwd.getpwnam(user).pw_uid if ROOT else os.getuid()

    def vuid(self):
        m = re.search(r"^virtual_uid_maps = static:(\d+)$", (self.dir / "main.cf").read_text(), re.M)
        return int(m.group(1))

    def maildir(self, rel="example.test/demo"):
        return self.dir / "mail" / rel

    def log_has(self, pattern, timeout=10):
        return wait_for(lambda: re.search(pattern, self.inst.log()), timeout, what=f"log {pattern!r}")


@pytest.fixture
def lda(inst):
    return Lda(inst)


MESSAGE = (b"From: a@example.org\nTo: someone\nSubject: local test\n\n"
           b"From the start of a line\n>From quoted once\n>>From twice\nFromage\n"
           b"8-bit \xe9\xff and a bare CR\r here\n.leading dot\n\nlast line without newline")

MAILDIR_NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.mail\.example\.test,S=(\d+),W=(\d+)$")
FROM_LINE = re.compile(rb"^From (\S+) [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\n")


def mbox_quoted(content):
    """mboxrd: a '>' before every line that matches ^>*From ."""
    lines = content.split(b"\n")
    return b"\n".join(b">" + ln if re.match(rb"^>*From ", ln) else ln for ln in lines)


def maildir_files(md):
    return sorted(os.listdir(md / "new"))


# ---------------------------------------------------------------- virtual mailboxes


def test_virtual_maildir_byte_exact_via_smtpd(lda):
    lda.start()
    raw = (b"From: a@example.org\r\nTo: demo@example.test\r\nSubject: exact\r\n\r\n"
           b"Line one.\r\n..leading dot\r\n8-bit caf\xe9\r\nFrom here\r\n")
    with smtplib.SMTP("127.0.0.1", lda.inst.ports[0], timeout=30) as s:
        s.ehlo("client.example")
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt("demo@example.test")[0] == 250
        code, resp = s.data(raw)
        assert code == 250
    qid = re.search(rb"queued as ([0-9A-V]{16})", resp).group(1).decode()
    q = QueueFile(incoming(lda.inst, qid))
    assert q.rcpts[0][0] == "demo@example.test"

    res = deliver(lda.inst, qid)
    assert res["demo@example.test"][0:2] == ("sent", "2.0.0"), res
    assert "maildir" in res["demo@example.test"][2]

    md = lda.maildir()
    names = maildir_files(md)
    assert len(names) == 1, names
    m = MAILDIR_NAME.match(names[0])
    assert m, names[0]
    data = (md / "new" / names[0]).read_bytes()
    assert data == b"Return-Path: <sender@example.org>\nDelivered-To: demo@example.test\n" + q.content
    # smtplib dot-stuffs, smtpd unstuffs: the lines arrive as written.
    assert q.content.endswith(b"Line one.\n..leading dot\n8-bit caf\xe9\nFrom here\n")
    assert int(m.group(5)) == len(data)
    assert int(m.group(6)) == len(data) + data.count(b"\n")
    assert os.listdir(md / "tmp") == [] and os.listdir(md / "cur") == []
    st = os.stat(md / "new" / names[0])
    assert stat.S_IMODE(st.st_mode) == 0o600
    for d in (md, md / "tmp", md / "new", md / "cur"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    if ROOT:
        assert st.st_uid == lda.vuid()
        assert os.stat(md / "new").st_uid == lda.vuid()

    # The same process serves the next request; every delivery is a new file.
    qid2 = submit(lda.inst, ["demo@example.test"], MESSAGE)
    assert deliver(lda.inst, qid2)["demo@example.test"][0] == "sent"
    assert len(maildir_files(md)) == 2


def test_virtual_big_message_streams(lda):
    lda.start(message_size_limit="40000000")
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\n"
    content = b"Subject: big\n\n" + line * (20 * 1024 * 1024 // len(line))
    qid = submit(lda.inst, ["demo@example.test"], content)
    res = deliver(lda.inst, qid, timeout=120)
    assert res["demo@example.test"][0] == "sent", res
    name = maildir_files(lda.maildir())[0]
    path = lda.maildir() / "new" / name
    m = MAILDIR_NAME.match(name)
    size = os.stat(path).st_size
    assert int(m.group(5)) == size
    assert size == len(content) + len("Return-Path: <sender@example.org>\nDelivered-To: demo@example.test\n")
    with open(path, "rb") as f:
        f.seek(-len(line) * 2, os.SEEK_END)
        assert f.read() == line * 2
    # Streamed, not loaded whole: local's peak memory stays well under the message size.
    hwm = []
    for pid in lda.inst.children():
        try:
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
            status = pathlib.Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if b"local" in cmdline.split(b"\0")[0] or cmdline.startswith(b"local"):
            hwm.append(int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024)
    assert hwm, "no local process found"
    assert max(hwm) < len(content) * 3 // 4, hwm


def test_virtual_unknown_user_loop_and_mbox_limit(lda):
    lda.start(vmailbox="demo@example.test example.test/demo/\nbox@example.test example.test/box\n"
                       "@catchall.test catchall.test/all/\n",
              virtual_mailbox_domains="example.test, catchall.test", virtual_mailbox_limit="700")
    qid = submit(lda.inst, ["nobody@example.test", "box@example.test", "anyone+x@catchall.test"], MESSAGE)
    res = deliver(lda.inst, qid)
    assert res["nobody@example.test"][0:2] == ("bounced", "5.1.1"), res
    assert "unknown user" in res["nobody@example.test"][2]
    assert res["box@example.test"][0:2] == ("sent", "2.0.0"), res
    assert res["anyone+x@catchall.test"][0] == "sent", res
    assert len(maildir_files(lda.maildir("catchall.test/all"))) == 1
    assert not lda.maildir("example.test/nobody").exists()
    box = lda.maildir("example.test/box")
    data = box.read_bytes()
    assert FROM_LINE.match(data)
    assert b"\nDelivered-To: box@example.test\n" in data
    if ROOT:
        assert os.stat(box).st_uid == lda.vuid()
    # Over virtual_mailbox_limit: bounced 5.2.2, the file unchanged.
    res = deliver(lda.inst, qid, ["box@example.test"])
    assert res["box@example.test"][0:2] == ("sent", "2.0.0")
    size = box.stat().st_size
    res = deliver(lda.inst, qid, ["box@example.test"])
    assert res["box@example.test"][0:2] == ("bounced", "5.2.2"), res
    assert "full" in res["box@example.test"][2]
    assert box.stat().st_size == size
    # A message that already went through this mailbox: a loop.
    qid = submit(lda.inst, ["demo@example.test"], b"Delivered-To: <Demo@Example.TEST>\nSubject: loop\n\nx\n")
    res = deliver(lda.inst, qid)
    assert res["demo@example.test"][0:2] == ("bounced", "5.4.6"), res
    assert "loop" in res["demo@example.test"][2]
    assert not lda.maildir().exists()


def test_virtual_uid_zero_is_deferred(lda):
    lda.start(virtual_uid_maps="static:0")
    qid = submit(lda.inst, ["demo@example.test"], MESSAGE)
    res = deliver(lda.inst, qid)
    assert res["demo@example.test"][0:2] == ("deferred", "4.3.5"), res
    assert "virtual_uid_maps" in res["demo@example.test"][2]
    assert not lda.maildir().exists()


# ---------------------------------------------------------------- system users


def test_system_mbox_from_quoting(lda):
    lda.start()
    rcpt = f"{lda.u1}@{HOST}"
    qid = submit(lda.inst, [rcpt, f"nosuchuser@{HOST}"], MESSAGE)
    res = deliver(lda.inst, qid)
    assert res[rcpt][0:2] == ("sent", "2.0.0"), res
    assert res[f"nosuchuser@{HOST}"][0:2] == ("bounced", "5.1.1"), res
    assert not (lda.spool / "nosuchuser").exists()
    mbox = lda.spool / lda.u1
    data = mbox.read_bytes()
    m = FROM_LINE.match(data)
    assert m and m.group(1) == SENDER.encode(), data[:80]
    body = data[m.end():]
    want = (f"Return-Path: <{SENDER}>\nDelivered-To: {rcpt}\n".encode() + mbox_quoted(MESSAGE) + b"\n\n")
    assert body == want
    assert b"\n>From the start of a line\n>>From quoted once\n>>>From twice\nFromage\n" in body
    st = mbox.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    if ROOT:
        # The spool is root's: root made the file and gave it to the recipient.
        assert st.st_uid == lda.uid(lda.u1)
    assert not (lda.spool / f"{lda.u1}.lock").exists()
    # A second delivery appends; the null sender is MAILER-DAEMON.
    qid = submit(lda.inst, [rcpt], b"Subject: second\n\nbody\n", sender="")
    assert deliver(lda.inst, qid)[rcpt][0] == "sent"
    data2 = mbox.read_bytes()
    assert data2.startswith(data)
    assert FROM_LINE.match(data2[len(data):]).group(1) == b"MAILER-DAEMON"
    assert data2.endswith(b"Return-Path: <>\nDelivered-To: " + rcpt.encode() + b"\nSubject: second\n\nbody\n\n")


def test_concurrent_mbox_deliveries_interleave_nothing(lda):
    from concurrent.futures import ThreadPoolExecutor

    lda.start()
    rcpt = f"{lda.u1}@{HOST}"
    bodies = {}
    for i in range(8):
        tag = f"message-{i}"
        bodies[tag] = f"Subject: {tag}\n\n".encode() + (f"{tag} line\n".encode() * 20000)
    qids = {tag: submit(lda.inst, [rcpt], body) for tag, body in bodies.items()}
    with ThreadPoolExecutor(len(qids)) as ex:
        results = list(ex.map(lambda q: deliver(lda.inst, q, timeout=120), qids.values()))
    assert [r[rcpt][0] for r in results] == ["sent"] * len(qids), [r[rcpt] for r in results]
    data = (lda.spool / lda.u1).read_bytes()
    copies = re.split(rb"(?m)^From \S+ [A-Z][a-z]{2} .*\n", data)
    assert copies[0] == b""
    copies = copies[1:]
    assert len(copies) == len(bodies)
    seen = set()
    for c in copies:
        m = re.search(rb"\nSubject: (message-\d+)\n", c)
        tag = m.group(1).decode()
        head = f"Return-Path: <{SENDER}>\nDelivered-To: {rcpt}\n".encode()
        assert c == head + bodies[tag] + b"\n", tag
        seen.add(tag)
    assert seen == set(bodies)


def test_mail_for_root_uses_default_privs(lda):
    lda.start()
    qid = submit(lda.inst, [f"root@{HOST}"], MESSAGE)
    res = deliver(lda.inst, qid)
    assert res[f"root@{HOST}"][0:2] == ("sent", "2.0.0"), res
    st = (lda.spool / "root").stat()
    assert st.st_uid == (pwd.getpwnam("nobody").pw_uid if ROOT else os.getuid())


def test_aliases_users_pipe_file_nested_duplicates(lda):
    lda.start(aliases=(
        f"team: {lda.u1}, {lda.u2}, \"|cat > OUT/team-pipe\", OUT/team-file\n"
        "outer: inner\n"
        f"inner: {lda.u1}\n"))
    rcpts = [f"team@{HOST}", f"outer@{HOST}", f"{lda.u1}@{HOST}"]
    qid = submit(lda.inst, rcpts, MESSAGE)
    res = deliver(lda.inst, qid)
    for r in rcpts:
        assert res[r][0:2] == ("sent", "2.0.0"), res
    # Each user gets exactly one copy, whatever the paths that lead to them.
    for u in {lda.u1, lda.u2}:
        data = (lda.spool / u).read_bytes()
        assert len(re.findall(rb"^From \S+ ", data, re.M)) == 1, (u, data[:200])
        assert f"\nDelivered-To: {u}@{HOST}\n".encode() in data
    # The command got the message with Return-Path and Delivered-To of the alias.
    piped = (lda.out / "team-pipe").read_bytes()
    assert piped == f"Return-Path: <{SENDER}>\nDelivered-To: team@{HOST}\n".encode() + stored(lda, qid)
    # The file got an mbox copy.
    filed = (lda.out / "team-file").read_bytes()
    assert FROM_LINE.match(filed)
    assert f"\nDelivered-To: team@{HOST}\n".encode() in filed
    if ROOT:
        # Named in a root-owned table: default_privs, never root.
        nobody = pwd.getpwnam("nobody").pw_uid
        assert (lda.out / "team-pipe").stat().st_uid == nobody
        assert (lda.out / "team-file").stat().st_uid == nobody


def test_include_files(lda):
    lda.start(aliases="staff: :include:OUT/../staff.list\nbad: :include:OUT/../bad.list\n"
                      "missing: :include:OUT/../missing.list\n",
              allow_mail_to_commands="alias, forward, include")
    (lda.dir / "staff.list").write_text(f"# the staff\n{lda.u1}\n\"|id -u > {lda.out}/inc-id\"\n")
    (lda.dir / "bad.list").write_text(f"{lda.u2}\n")
    os.chmod(lda.dir / "bad.list", 0o666)
    rcpts = [f"staff@{HOST}", f"bad@{HOST}", f"missing@{HOST}"]
    qid = submit(lda.inst, rcpts, MESSAGE)
    res = deliver(lda.inst, qid)
    assert res[rcpts[0]][0:2] == ("sent", "2.0.0"), res
    assert (lda.spool / lda.u1).exists()
    # Owned by root: its command runs as default_privs.
    want = pwd.getpwnam("nobody").pw_uid if ROOT else os.getuid()
    assert (lda.out / "inc-id").read_text().strip() == str(want)
    # Writable by others, or missing: deferred, nothing delivered.
    assert res[rcpts[1]][0:2] == ("deferred", "4.3.0"), res
    assert "unsafe :include:" in res[rcpts[1]][2]
    assert res[rcpts[2]][0:2] == ("deferred", "4.3.0"), res
    if lda.u2 != lda.u1:
        assert not (lda.spool / lda.u2).exists()
    lda.log_has(r"unsafe :include: file ignored: .*writable by group or others")
    if ROOT:
        # Owned by a user (who owns the table that names it): its commands run as that user.
        os.chown(lda.dir / "staff.list", lda.uid(lda.u2), -1)
        res = deliver(lda.inst, qid, [rcpts[0]])
        assert res[rcpts[0]][0:2] == ("deferred", "4.3.0"), res
        assert "owned by uid" in res[rcpts[0]][2]
        os.chown(lda.aliases, lda.uid(lda.u2), -1)
        (lda.out / "inc-id").unlink()
        res = deliver(lda.inst, qid, [rcpts[0]])
        assert res[rcpts[0]][0] == "sent", res
        assert (lda.out / "inc-id").read_text().strip() == str(lda.uid(lda.u2))


def test_alias_loops(lda):
    lda.start(aliases="loopa: loopb\nloopb: loopa\nself: self, \\self\n")
    rcpts = [f"loopa@{HOST}", f"self@{HOST}", f"{lda.u1}@{HOST}"]
    qid = submit(lda.inst, rcpts,
                 f"Delivered-To: {lda.u1.upper()}@{HOST}\nSubject: been here\n\nx\n".encode())
    res = deliver(lda.inst, qid)
    assert res[f"loopa@{HOST}"][0:2] == ("bounced", "5.4.6"), res
    assert "loop" in res[f"loopa@{HOST}"][2]
    # The Delivered-To already in the header: a loop, nothing written.
    assert res[f"{lda.u1}@{HOST}"][0:2] == ("bounced", "5.4.6"), res
    assert not (lda.spool / lda.u1).exists()
    # "self: self" is the user's own mailbox; there is no user "self".
    assert res[f"self@{HOST}"][0:2] == ("bounced", "5.1.1"), res


def test_forward_to_remote_and_loop_back(lda):
    lda.start(aliases=f"fw: someone@example.org, {lda.u1}\n")
    qid = submit(lda.inst, [f"fw@{HOST}"], MESSAGE)
    res = deliver(lda.inst, qid)
    status, dsn, reason = res[f"fw@{HOST}"]
    assert (status, dsn) == ("sent", "2.0.0"), res
    m = re.search(r"forwarded as ([0-9A-V]{16})", reason)
    assert m, reason
    fq = QueueFile(incoming(lda.inst, m.group(1)))
    assert fq.sender == SENDER
    assert [r[0] for r in fq.rcpts] == ["someone@example.org"]
    assert fq.content == f"Delivered-To: fw@{HOST}\n".encode() + stored(lda, qid)
    assert (lda.spool / lda.u1).exists()
    # If the forwarded copy comes back to fw, it is a loop.
    res = deliver(lda.inst, m.group(1), [(f"fw@{HOST}", fq.rcpts[0][1])])
    assert res[f"fw@{HOST}"][0:2] == ("bounced", "5.4.6"), res


def test_dotforward(lda):
    lda.start()
    u1 = lda.u1
    fwd = lda.fwd / u1
    fwd.write_text(f"# keep a copy, and run a command\n\\{u1}, \"|id -u > {lda.out}/fwd-id; cat > {lda.out}/fwd-msg\"\n")
    os.chmod(fwd, 0o644)
    if ROOT:
        os.chown(fwd, lda.uid(u1), -1)
    rcpt = f"{u1}@{HOST}"
    qid = submit(lda.inst, [rcpt], MESSAGE)
    res = deliver(lda.inst, qid)
    assert res[rcpt][0:2] == ("sent", "2.0.0"), res
    assert (lda.out / "fwd-id").read_text().strip() == str(lda.uid(u1))
    assert (lda.out / "fwd-msg").read_bytes() == (
        f"Return-Path: <{SENDER}>\nDelivered-To: {rcpt}\n".encode() + stored(lda, qid))
    assert len(re.findall(rb"^From \S+ ", (lda.spool / u1).read_bytes(), re.M)) == 1

    # Writable by the group: ignored with a warning; the mailbox as usual.
    os.chmod(fwd, 0o664)
    (lda.out / "fwd-id").unlink()
    qid = submit(lda.inst, [rcpt], MESSAGE)
    assert deliver(lda.inst, qid)[rcpt][0] == "sent"
    assert not (lda.out / "fwd-id").exists()
    assert len(re.findall(rb"^From \S+ ", (lda.spool / u1).read_bytes(), re.M)) == 2
    lda.log_has(r"ignoring \.forward file: .*writable by group or others")
    if ROOT:
        # Owned by someone else: ignored too.
        os.chmod(fwd, 0o644)
        os.chown(fwd, lda.uid(lda.u2), -1)
        qid = submit(lda.inst, [rcpt], MESSAGE)
        assert deliver(lda.inst, qid)[rcpt][0] == "sent"
        assert not (lda.out / "fwd-id").exists()
        lda.log_has(r"ignoring \.forward file: .* is owned by uid")

        # A file the user may not create is not created for them by root.
        rootonly = lda.dir / "rootonly"
        rootonly.mkdir(mode=0o755)
        fwd.write_text(f"{rootonly}/planted\n")
        os.chown(fwd, lda.uid(u1), -1)
        qid = submit(lda.inst, [rcpt], MESSAGE)
        res = deliver(lda.inst, qid)
        assert res[rcpt][0:2] == ("deferred", "4.3.0"), res
        assert "Permission denied" in res[rcpt][2]
        assert os.listdir(rootonly) == []


# ---------------------------------------------------------------- file safety


def test_unsafe_mailboxes_are_deferred(lda):
    lda.start()
    rcpt = f"{lda.u1}@{HOST}"
    mbox = lda.spool / lda.u1
    qid = submit(lda.inst, [rcpt], MESSAGE)

    target = lda.out / "target"
    target.write_bytes(b"")
    mbox.symlink_to(target)
    res = deliver(lda.inst, qid)
    assert res[rcpt][0:2] == ("deferred", "4.2.0"), res
    assert "symbolic link" in res[rcpt][2]
    assert target.read_bytes() == b""
    lda.log_has(r"unsafe mailbox: .* is a symbolic link")
    mbox.unlink()

    target2 = lda.spool / "target2"
    target2.write_bytes(b"")
    if ROOT:
        os.chown(target2, lda.uid(lda.u1), -1)
    os.link(target2, mbox)
    res = deliver(lda.inst, qid)
    assert res[rcpt][0:2] == ("deferred", "4.2.0"), res
    assert "hard links" in res[rcpt][2]
    assert target2.read_bytes() == b""
    mbox.unlink()

    if ROOT:
        mbox.write_bytes(b"")
        os.chown(mbox, lda.uid(lda.u2), -1)
        res = deliver(lda.inst, qid)
        assert res[rcpt][0:2] == ("deferred", "4.2.0"), res
        assert "owned by uid" in res[rcpt][2]
        assert mbox.read_bytes() == b""
        os.chown(mbox, lda.uid(lda.u1), -1)
    else:
        mbox.write_bytes(b"")

    # Fixed: delivered.
    res = deliver(lda.inst, qid)
    assert res[rcpt][0] == "sent", res
    assert FROM_LINE.match(mbox.read_bytes())


def test_unsafe_maildir_is_deferred(lda):
    lda.start()
    md = lda.maildir()
    md.parent.mkdir(parents=True)
    md.mkdir()
    elsewhere = lda.out / "elsewhere"
    elsewhere.mkdir()
    (md / "new").symlink_to(elsewhere)
    if ROOT:
        for p in (md.parent, md, elsewhere):
            os.chown(p, lda.vuid(), -1)
        os.lchown(md / "new", lda.vuid(), -1)
    qid = submit(lda.inst, ["demo@example.test"], MESSAGE)
    res = deliver(lda.inst, qid)
    assert res["demo@example.test"][0:2] == ("deferred", "4.2.0"), res
    assert os.listdir(elsewhere) == []
    assert os.listdir(md / "tmp") == []


# ---------------------------------------------------------------- commands


def test_pipe_environment_and_descriptors(lda):
    lda.start(aliases="envtest: \"|id > OUT/id; ls -l /proc/self/fd > OUT/fd; env > OUT/env; pwd > OUT/pwd\"\n")
    rcpt = f"envtest+tag@{HOST}"
    qid = submit(lda.inst, [rcpt], MESSAGE)
    res = deliver(lda.inst, qid)
    assert res[rcpt][0:2] == ("sent", "2.0.0"), res
    env = dict(line.split("=", 1) for line in (lda.out / "env").read_text().splitlines() if "=" in line)
    assert env["RECIPIENT"] == f"envtest+tag@{HOST}"
    assert env["LOCAL"] == "envtest+tag"
    assert env["EXTENSION"] == "tag"
    assert env["DOMAIN"] == HOST
    assert env["SENDER"] == SENDER
    assert env["SHELL"] == "/bin/sh"
    assert env["PATH"] == "/usr/bin:/bin"
    ours = {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "SENDER", "RECIPIENT", "LOCAL", "DOMAIN", "EXTENSION"}
    shells = {"PWD", "SHLVL", "_", "OLDPWD"}
    assert ours <= set(env) <= ours | shells, sorted(env)
    assert not [k for k in env if k.startswith("LD_")]
    # ls sees 0, 1, 2 and the directory it opened itself: nothing else leaks in.
    fds = sorted(int(m) for m in re.findall(r" (\d+) -> ", (lda.out / "fd").read_text()))
    assert fds == [0, 1, 2, 3], (lda.out / "fd").read_text()
    if ROOT:
        nobody = pwd.getpwnam("nobody")
        ident = (lda.out / "id").read_text()
        assert ident.startswith(f"uid={nobody.pw_uid}("), ident
        assert f"gid={nobody.pw_gid}(" in ident
        assert "(root)" not in ident
        assert env["USER"] == "nobody"
        assert (lda.out / "pwd").read_text().strip() == "/"

        # A table owned by a user: its commands run as that user.
        os.chown(lda.aliases, lda.uid(lda.u2), -1)
        for f in ("id", "env", "fd", "pwd"):
            (lda.out / f).unlink()
        res = deliver(lda.inst, qid)
        assert res[rcpt][0] == "sent", res
        ident = (lda.out / "id").read_text()
        assert ident.startswith(f"uid={lda.uid(lda.u2)}("), ident


def test_pipe_exit_codes_and_time_limit(lda):
    lda.start(aliases=("tempfail: \"|echo try again later; exit 75\"\n"
                       "nouser: \"|echo no such mailbox here >&2; exit 67\"\n"
                       "fails: |false\n"
                       "slow: |/bin/sleep 60\n"
                       "nocmd: |/no/such/command\n"),
              command_time_limit="2s")
    rcpts = [f"{n}@{HOST}" for n in ("tempfail", "nouser", "fails", "slow", "nocmd")]
    qid = submit(lda.inst, rcpts, MESSAGE)
    t0 = time.monotonic()
    res = deliver(lda.inst, qid)
    elapsed = time.monotonic() - t0
    assert res[rcpts[0]][0:2] == ("deferred", "4.3.0"), res
    assert "try again later" in res[rcpts[0]][2]
    assert res[rcpts[1]][0:2] == ("bounced", "5.1.1"), res
    assert "no such mailbox here" in res[rcpts[1]][2]
    assert res[rcpts[2]][0:2] == ("bounced", "5.3.0"), res
    assert "command failed" in res[rcpts[2]][2]
    assert res[rcpts[3]][0:2] == ("deferred", "4.3.0"), res
    assert "timed out" in res[rcpts[3]][2]
    assert res[rcpts[4]][0] == "bounced", res
    assert elapsed < 20, elapsed


def test_commands_not_allowed(lda):
    lda.start(aliases="cmd: |/bin/cat\nfile: OUT/f\n", allow_mail_to_commands="forward",
              allow_mail_to_files="forward")
    qid = submit(lda.inst, [f"cmd@{HOST}", f"file@{HOST}"], MESSAGE)
    res = deliver(lda.inst, qid)
    assert res[f"cmd@{HOST}"][0:2] == ("bounced", "5.7.1"), res
    assert res[f"file@{HOST}"][0:2] == ("bounced", "5.7.1"), res
    assert not (lda.out / "f").exists()


# ---------------------------------------------------------------- who may ask


@pytest.mark.skipif(not ROOT, reason="needs another uid")
def test_only_qmgr_may_connect(lda):
    lda.start()
    private = lda.dir / "queue" / "private"
    os.chmod(private, 0o711)
    os.chmod(private / "local", 0o666)
    nobody = pwd.getpwnam("nobody").pw_uid
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(pwd.getpwnam("nobody").pw_gid)
            os.setuid(nobody)
            c = ipcwire.Conn(private / "local", 10)
            verdict = b"closed" if c.closed_by_peer(10) else b"answered"
        except Exception as e:
            verdict = repr(e).encode()
        os.write(w, verdict)
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    verdict = os.read(r, 200)
    os.close(r)
    assert verdict == b"closed", verdict
    lda.log_has(rf"refusing a client with uid {nobody}")

"""cleanup, the only writer of queue files, and the commands that read them.

Each test starts an instance whose master.cf runs only cleanup and talks
to queue/private/cleanup with the small client below, written from
doc/ipc.md sections 2, 4 and 8.1 alone (so the document is shown to be
enough to implement a client).  What is checked is what an admin sees:
the reply, the queue file (through "postern cat" and "postern queue"),
its mode, and the log.
"""
import json
import os
import re
import socket
import stat
import subprocess
import time

import pytest

import ipcwire
from instance import wait_for
from ipcwire import encode

MASTER_CF = "cleanup unix - - n - 0 cleanup\n"


# ---------------------------------------------------------------- protocol


class Conn(ipcwire.Conn):
    """One cleanup connection: greeting, envelope, frames, result."""

    def __init__(self, inst, timeout=10.0):
        super().__init__(inst.dir / "queue" / "private" / "cleanup", timeout)

    def read_list(self, timeout=None):
        attrs = super().read_list(timeout)
        if attrs is None:
            raise EOFError("cleanup closed the connection")
        return attrs

    def greeting(self):
        d = dict(self.read_list())
        assert d["protocol"] == b"cleanup", d
        assert int(d["version"]) >= 1, d

    def envelope(self, sender, rcpts, **attrs):
        """rcpts: addresses, or (address, orcpt, notify) tuples."""
        pairs = [("sender", sender)]
        pairs += [(k, str(v)) for k, v in attrs.items()]
        for r in rcpts:
            if isinstance(r, str):
                r = (r, None, None)
            pairs.append(("rcpt", r[0]))
            if r[1]:
                pairs.append(("orcpt", r[1]))
            if r[2]:
                pairs.append(("notify", str(r[2])))
        self.send(encode(pairs))

    def content(self, data, frame=65536):
        for i in range(0, len(data), frame):
            piece = data[i:i + frame]
            self.send(b"%d\n" % len(piece) + piece)

    def result(self):
        self.send(b"0\n")
        return {k: v.decode() for k, v in self.read_list()}

    def closed_without_reply(self, timeout=10.0):
        """True when cleanup hangs up without sending anything."""
        return self.closed_by_peer(timeout)


def submit(inst, sender, rcpts, content, **attrs):
    c = Conn(inst)
    try:
        c.greeting()
        c.envelope(sender, rcpts, **attrs)
        c.content(content)
        return c.result()
    finally:
        c.close()


# ---------------------------------------------------------------- helpers


def start(inst, **params):
    inst.write_master_cf(MASTER_CF)
    if params:
        inst.conf(**params)
    inst.start()


def incoming(inst):
    return sorted(os.listdir(inst.dir / "queue" / "incoming"))


def postern_bytes(inst, *args):
    """Run postern and return (status, stdout bytes, stderr text): content is bytes."""
    p = subprocess.run([inst.postern, "-c", str(inst.dir), *args], capture_output=True, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def log_has(inst, pattern, timeout=10.0):
    return wait_for(lambda: re.search(pattern, inst.log()), timeout, what=f"log line {pattern!r}")


MESSAGE = (
    b"Received: from client.example by mx.example.test\n"
    b"Subject: queue file test\n"
    b"Message-ID: <t1@example.org>\n"
    b"\n"
    b"8-bit \xff\xfe and NUL \x00 bytes\n"
    b"a bare CR\r here, a CR LF kept as data\r\n"
    b".leading dot\n"
    b"last line without newline"
)


# ---------------------------------------------------------------- tests


def test_message_queued_and_cat_shows_it(inst):
    start(inst)
    res = submit(
        inst,
        "alice@example.org",
        ["bob@example.test", ("carol@example.test", "rfc822;carol@example.test", 6)],
        MESSAGE,
        client_name="client.example",
        client_addr="192.0.2.1",
        helo="client.example",
        protocol="ESMTP",
        smtputf8=0,
        size=len(MESSAGE),
    )
    assert res["status"] == "0", res
    assert res["dsn"] == "2.0.0"
    qid = res["queue_id"]
    assert re.fullmatch(r"[0-9A-V]{16}", qid)

    # Committed in incoming/ with the mode that says complete; nothing else there.
    assert incoming(inst) == [qid]
    st = os.stat(inst.dir / "queue" / "incoming" / qid)
    assert stat.S_IMODE(st.st_mode) == 0o700

    stored = MESSAGE + b"\n"  # the last line gets its newline
    rc, out, err = postern_bytes(inst, "cat", "-b", qid)
    assert rc == 0, err
    assert out == stored.split(b"\n\n", 1)[1]
    rc, out, err = postern_bytes(inst, "cat", "-h", qid)
    assert rc == 0, err
    assert out == stored.split(b"\n\n", 1)[0] + b"\n"

    for flags in (["-hb"], ["-b", "-h"]):
        rc, out, err = postern_bytes(inst, "cat", *flags, qid)
        assert rc == 0 and out == stored, (flags, err)
    rc, out, err = postern_bytes(inst, "cat", "-e", "-b", qid)
    assert rc == 2

    rc, out, err = postern_bytes(inst, "cat", qid)
    assert rc == 0, err
    env, rest = out.split(b"*** MESSAGE CONTENTS incoming/%s ***\n" % qid.encode(), 1)
    content, tail = rest.split(b"*** HEADER EXTRACTED incoming/%s ***\n" % qid.encode(), 1)
    assert content == stored
    assert tail.endswith(b"*** MESSAGE FILE END incoming/%s ***\n" % qid.encode())
    env = env.decode()
    assert "sender: alice@example.org\n" in env
    assert f"message_size: {len(stored)}\n" in env
    assert "named_attribute: client_addr=192.0.2.1\n" in env
    assert "named_attribute: protocol=ESMTP\n" in env
    assert "recipient: bob@example.test\n" in env
    assert "recipient: carol@example.test\ndsn_orig_rcpt: rfc822;carol@example.test\n" in env
    assert "dsn_notify_flags: SUCCESS,FAILURE\n" in env

    rc, out, err = postern_bytes(inst, "cat", "-e", qid)
    assert rc == 0 and b"*** MESSAGE CONTENTS" not in out and b"sender: alice@example.org" in out

    log_has(inst, rf"{qid}: message-id=<t1@example.org>")
    log_has(inst, rf"{qid}: from=<alice@example.org>, size={len(stored)}, nrcpt=2 \(queue active\)")


def test_cat_errors(inst):
    start(inst)
    rc, out, err = postern_bytes(inst, "cat", "../../etc/passwd")
    assert rc == 2 and "not a queue ID" in err
    rc, out, err = postern_bytes(inst, "cat", "1LG5ID3GHOC00IL0")
    assert rc == 1 and "no such message" in err


def test_client_id_is_used(inst):
    start(inst)
    qid = "1LG5ID3GHOC00IL0"
    res = submit(inst, "", ["bob@example.test"], b"Subject: x\n\nbody\n", queue_id=qid)
    assert res["status"] == "0" and res["queue_id"] == qid
    assert incoming(inst) == [qid]
    # The same ID again: never replaces a queued file.
    res = submit(inst, "", ["bob@example.test"], b"Subject: y\n\nbody\n", queue_id=qid)
    assert res["status"] == "4", res
    rc, out, _ = postern_bytes(inst, "cat", "-h", qid)
    assert out == b"Subject: x\n"


def test_hangup_mid_content_leaves_nothing(inst):
    start(inst)
    for size in (100, 300000):  # in memory only; and already partly on disk
        c = Conn(inst)
        c.greeting()
        c.envelope("alice@example.org", ["bob@example.test"])
        c.content(b"Subject: x\n\n" + b"y" * size)
        c.send(b"500\n" + b"z" * 10)  # a frame cut short
        c.close()
        log_has(inst, r"lost connection with client after %d bytes" % (size + 12 + 10))
        wait_for(lambda: incoming(inst) == [], 5, what="incoming/ to be empty")
    # cleanup still works afterwards.
    assert submit(inst, "", ["bob@example.test"], b"x\n")["status"] == "0"


@pytest.mark.parametrize("frame", [b"abc\n", b"-1\n", b"0010\n", b"1048577\n", b"1" * 30 + b"\n", b" 5\n"])
def test_bad_frame_drops_connection(inst, frame):
    start(inst)
    c = Conn(inst)
    c.greeting()
    c.envelope("alice@example.org", ["bob@example.test"])
    c.content(b"Subject: x\n\n" + b"y" * 100000)
    c.send(frame + b"x" * 20)
    assert c.closed_without_reply()
    c.close()
    log_has(inst, r"(bad content frame length|frame length line too long)")
    assert incoming(inst) == []


def test_malformed_envelope_list_drops_connection(inst):
    start(inst)
    c = Conn(inst)
    c.greeting()
    c.send(b"Sender\0a@b\0\0")  # upper case in a name: a framing error (doc/ipc.md 2.3)
    assert c.closed_without_reply()
    c.close()


@pytest.mark.parametrize(
    "sender,rcpts,attrs,dsn",
    [
        ("a@b", ["bad\x01rcpt@example.test"], {}, "5.1.3"),
        ("<a@b>", ["r@example.test"], {}, "5.1.7"),
        ("a@b", ["r@example.test"], {"flags": 99}, "5.5.4"),
        ("a@b", ["r@example.test"], {"queue_id": "../etc"}, "5.5.4"),
        ("a@b", ["r@example.test"], {"unknown_attr": "x"}, "5.5.4"),
        ("a@b", [("r@example.test", None, 3)], {}, "5.5.4"),  # NEVER with SUCCESS
        ("a@b", [("r@example.test", "no-semicolon", None)], {}, "5.5.4"),
        ("a@b", [], {}, "5.5.4"),
    ],
)
def test_bad_envelope_refused_after_content(inst, sender, rcpts, attrs, dsn):
    start(inst)
    res = submit(inst, sender, rcpts, b"Subject: x\n\nbody\n", **attrs)
    assert res["status"] == "5", res
    assert res["dsn"] == dsn, res
    assert res["reason"]
    assert "queue_id" not in res
    assert incoming(inst) == []


def test_message_size_limit(inst):
    start(inst, message_size_limit=1000)
    res = submit(inst, "alice@example.org", ["bob@example.test"], b"Subject: x\n\n" + b"y" * 2000)
    assert res["status"] == "5" and res["dsn"] == "5.3.4", res
    assert "too big" in res["reason"]
    assert incoming(inst) == []
    # Just under the limit is fine.
    res = submit(inst, "alice@example.org", ["bob@example.test"], b"Subject: x\n\n" + b"y" * 900 + b"\n")
    assert res["status"] == "0", res


def test_submission_adds_missing_headers(inst):
    start(inst)
    res = submit(inst, "alice@example.org", ["bob@example.test"], b"Subject: hi\n\nbody\n", flags=1)
    assert res["status"] == "0", res
    rc, out, _ = postern_bytes(inst, "cat", "-h", res["queue_id"])
    lines = out.decode().splitlines()
    assert lines[0] == "Subject: hi"
    assert re.fullmatch(r"Message-ID: <\d{14}\.[0-9A-F]{8}\.%s@[^>]+>" % res["queue_id"], lines[1]), lines
    assert re.fullmatch(r"Date: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", lines[2]), lines
    assert lines[3] == "From: alice@example.org"


def test_virtual_alias_expansion(inst):
    start(
        inst,
        virtual_alias_maps="inline:{ { list@example.test = a@example.test, b@example.test }, "
        "{ a@example.test = a@example.test } }",
    )
    res = submit(inst, "alice@example.org", ["list@example.test", "b@example.test"], b"x\n")
    assert res["status"] == "0", res
    rc, out, _ = postern_bytes(inst, "cat", "-e", res["queue_id"])
    env = out.decode()
    assert "recipient: a@example.test\ndsn_orig_rcpt: rfc822;list@example.test\n" in env
    assert "recipient: b@example.test\ndsn_orig_rcpt: rfc822;list@example.test\n" in env
    assert env.count("recipient: ") == 2  # the second b@ was a duplicate
    assert "list@example.test\n" not in env.replace("rfc822;list@example.test\n", "")
    log_has(inst, r"%s: from=<alice@example.org>, size=2, nrcpt=2" % res["queue_id"])


def test_missing_table_defers(inst):
    start(inst, virtual_alias_maps=f"hash:{inst.dir}/no-such-table")
    res = submit(inst, "alice@example.org", ["bob@example.test"], b"x\n")
    assert res["status"] == "4", res
    assert res["dsn"] == "4.3.0"
    assert "try again later" in res["reason"]
    assert incoming(inst) == []
    log_has(inst, r"virtual_alias_maps: lookup of <bob@example.test> failed")


def test_queue_listing(inst):
    rc, out, _ = postern_bytes(inst, "queue")
    assert rc == 0 and out == b"Mail queue is empty\n"
    start(inst)
    r1 = submit(inst, "alice@example.org", ["bob@example.test", "carol@example.test"], b"x" * 3000 + b"\n")
    r2 = submit(inst, "", ["dave@example.test"], b"Subject: y\n\n\n")
    assert r1["status"] == "0" and r2["status"] == "0"
    rc, out, err = postern_bytes(inst, "queue")
    assert rc == 0, err
    text = out.decode()
    assert text.startswith("-Queue ID-")
    assert re.search(r"^%s\s+3001 .* alice@example\.org$" % r1["queue_id"], text, re.M), text
    assert re.search(r"^\s{20,}bob@example\.test$", text, re.M)
    assert re.search(r"^\s{20,}carol@example\.test$", text, re.M)
    assert re.search(r"^%s\s+13 .* MAILER-DAEMON$" % r2["queue_id"], text, re.M), text
    assert text.rstrip().endswith("-- 3 Kbytes in 2 Requests.")

    rc, out, err = postern_bytes(inst, "queue", "-j")
    assert rc == 0, err
    msgs = [json.loads(line) for line in out.decode().splitlines()]
    assert [m["queue_id"] for m in msgs] == sorted([r1["queue_id"], r2["queue_id"]])
    by_id = {m["queue_id"]: m for m in msgs}
    m1 = by_id[r1["queue_id"]]
    assert m1["queue_name"] == "incoming"
    assert m1["sender"] == "alice@example.org"
    assert m1["message_size"] == 3001
    assert abs(m1["arrival_time"] - time.time()) < 600
    assert m1["recipients"] == [
        {"address": "bob@example.test", "done": False},
        {"address": "carol@example.test", "done": False},
    ]
    assert by_id[r2["queue_id"]]["sender"] == ""


def test_many_messages_one_process(inst):
    start(inst)
    ids = set()
    for i in range(30):
        res = submit(inst, "alice@example.org", [f"r{i}@example.test"], b"Subject: %d\n\nbody\n" % i)
        assert res["status"] == "0", res
        ids.add(res["queue_id"])
    assert len(ids) == 30
    assert sorted(ids) == incoming(inst)

"""Bounces end to end: RFC 3464 reports that a sender finds in its mailbox.

A 'postern init' instance where mail for nowhere.example goes to a
transport that does not exist (transport_maps = inline:{...=nosuch:}), so
every attempt defers, and maximal_queue_lifetime = 0, so the first
deferral expires the message.  The sender is the demo user: its bounces
land in DIR/mail/example.test/demo/new/, where Python's email package
reads them the way a mail client would.

These tests need qmgr and local; they skip while those are stubs.
"""
import email
import email.policy
import re
import smtplib
import time

import pytest

from instance import wait_for
from mail import queue

DEMO = "demo@example.test"
NOWHERE = "nowhere.example"


def _real_daemon(path):
    """True for a built daemon, not a stub: a stub is an empty main() of a few KiB, a
    daemon links the server skeleton and the protocol code of libpostern (hundreds of KiB)."""
    try:
        return path.stat().st_size > 64 * 1024
    except OSError:
        return False


@pytest.fixture
def bouncer(inst):
    libexec = inst.build / "libexec"
    for name in ("qmgr", "local"):
        if not _real_daemon(libexec / name):
            pytest.skip(f"{libexec / name} is missing or a stub: bounces need qmgr and local")
    master_cf = (inst.dir / "master.cf").read_text()
    for name in ("qmgr", "local"):
        if not re.search(rf"^{name}\s", master_cf, re.M):
            # postern init may still list them commented out: switch them on.
            master_cf, n = re.subn(rf"^#\s*({name}\s+unix\s)", r"\1", master_cf, flags=re.M)
            if n == 0:
                pytest.skip(f"postern init's master.cf does not run {name} yet")
    inst.write_master_cf(master_cf)
    inst.smtp = inst.ports[0]
    inst.conf(
        smtpd_error_sleep_time="0",
        transport_maps=f"inline:{{{NOWHERE}=nosuch:}}",
        maximal_queue_lifetime="0",
        bounce_queue_lifetime="0",
        minimal_backoff_time="1s",
        maximal_backoff_time="2s",
        queue_run_delay="1s",
        **{"2bounce_notice_recipient": DEMO},
    )
    inst.start()
    yield inst


def new_dir(inst, user="demo"):
    return inst.dir / "mail" / "example.test" / user / "new"


def mailbox(inst, user="demo"):
    """Every message in the user's new/, parsed: [(path, raw bytes, message)]."""
    d = new_dir(inst, user)
    out = []
    for f in sorted(d.iterdir()) if d.exists() else []:
        raw = f.read_bytes()
        out.append((f, raw, email.message_from_bytes(raw, policy=email.policy.default)))
    return out


def reports(inst):
    return [(f, raw, m) for f, raw, m in mailbox(inst) if m.get_content_type() == "multipart/report"]


def flush_until(inst, pred, timeout=60, what="condition"):
    """Wait for pred(), asking qmgr to retry deferred mail now and then (expiry needs an attempt)."""
    last = [0.0]

    def check():
        value = pred()
        if not value and time.monotonic() - last[0] > 3:
            inst.cmd("flush")
            last[0] = time.monotonic()
        return value

    return wait_for(check, timeout, interval=0.2, what=what)


def wait_reports(inst, n, timeout=60):
    return flush_until(inst, lambda: len(reports(inst)) >= n and reports(inst), timeout, f"{n} reports in demo's Maildir")


def wait_empty_queue(inst, timeout=60):
    flush_until(inst, lambda: queue(inst) == [], timeout, "an empty queue")


def settle(inst, seconds=4):
    """Give a loop, a second notice or a late bounce time to show up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        inst.cmd("flush")
        time.sleep(1)


def send(inst, sender, rcpts, data, mail_opts=(), rcpt_opts=None):
    """One SMTP transaction; rcpt_opts maps a recipient to its RCPT parameters."""
    with smtplib.SMTP("127.0.0.1", inst.smtp, timeout=60) as s:
        s.ehlo("client.example")
        code, resp = s.mail(sender, list(mail_opts))
        assert code == 250, resp
        for r in rcpts:
            code, resp = s.rcpt(r, list((rcpt_opts or {}).get(r, ())))
            assert code == 250, (r, resp)
        code, resp = s.data(data)
        assert code == 250, resp
        return re.search(rb"queued as ([0-9A-V]{16})", resp).group(1).decode()


def parts(report):
    """(text part, delivery-status part, original part) of a multipart/report."""
    p = list(report.iter_parts())
    assert len(p) == 3, [x.get_content_type() for x in p]
    return p[0], p[1], p[2]


def status_blocks(ds_part):
    """Per-message fields and the list of per-recipient field blocks of a message/delivery-status part."""
    assert ds_part.get_content_type() == "message/delivery-status"
    blocks = ds_part.get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, blocks
    return blocks[0], blocks[1:]


def by_recipient(blocks):
    out = {}
    for b in blocks:
        typ, _, addr = str(b["Final-Recipient"]).partition(";")
        assert typ.strip().lower() == "rfc822", b["Final-Recipient"]
        out[addr.strip()] = b
    return out


def check_notice_header(raw, report, subject):
    # local records the envelope sender: a notice always comes from <>.
    assert raw.startswith(b"Return-Path: <>\n"), raw[:200]
    assert str(report["To"]).strip("<>") == DEMO
    assert re.match(r"MAILER-DAEMON@\S+", str(report["From"])), report["From"]
    assert str(report["Subject"]) == subject
    assert str(report["Auto-Submitted"]) == "auto-replied"
    assert report.get_param("report-type") == "delivery-status"
    assert report["Date"] is not None and report["Message-Id"] is not None
    assert not any(p.defects for p in report.walk()), [p.defects for p in report.walk()]


ORIGINAL = (
    f"From: Demo <{DEMO}>\r\n"
    "To: x@nowhere.example\r\n"
    "Subject: a message that cannot arrive\r\n"
    "\r\n"
    "The body of the original.\r\n"
)


def test_expired_mail_bounces_to_the_sender(bouncer):
    qid = send(
        bouncer, DEMO, ["x@nowhere.example", "y@nowhere.example", DEMO], ORIGINAL,
        mail_opts=["RET=FULL", "ENVID=QQ314159"],
        rcpt_opts={"x@nowhere.example": ["NOTIFY=FAILURE", "ORCPT=rfc822;X@nowhere.example"]},
    )
    f, raw, rep = wait_reports(bouncer, 1)[0]
    check_notice_header(raw, rep, "Undelivered Mail Returned to Sender")
    text, ds, orig = parts(rep)
    assert text.get_content_type() == "text/plain"
    body = text.get_content()
    assert "x@nowhere.example" in body and "y@nowhere.example" in body
    msg_fields, blocks = status_blocks(ds)
    assert str(msg_fields["Reporting-MTA"]).startswith("dns; ")
    assert str(msg_fields["Original-Envelope-Id"]) == "QQ314159"
    assert msg_fields["Arrival-Date"] is not None
    assert str(msg_fields["X-Postern-Queue-ID"]) == qid
    rcpts = by_recipient(blocks)
    # The demo copy was delivered: only the two expired recipients are reported.
    assert sorted(rcpts) == ["x@nowhere.example", "y@nowhere.example"]
    for addr, b in rcpts.items():
        assert str(b["Action"]) == "failed", addr
        assert re.fullmatch(r"[45]\.\d{1,3}\.\d{1,3}", str(b["Status"])), b["Status"]
        assert b["Diagnostic-Code"] is not None
    assert str(rcpts["x@nowhere.example"]["Original-Recipient"]) == "rfc822; X@nowhere.example"
    assert rcpts["y@nowhere.example"]["Original-Recipient"] is None
    # RET=FULL: the original comes back whole.
    assert orig.get_content_type() == "message/rfc822"
    inner = orig.get_payload()[0]
    assert str(inner["Subject"]) == "a message that cannot arrive"
    assert inner.get_content().strip() == "The body of the original."
    # The original reached demo too; then nothing more, and the queue is empty.
    wait_empty_queue(bouncer)
    settle(bouncer)
    assert len(reports(bouncer)) == 1
    originals = [m for _, _, m in mailbox(bouncer) if m.get_content_type() != "multipart/report"]
    assert len(originals) == 1 and str(originals[0]["Subject"]) == "a message that cannot arrive"


def test_ret_hdrs_returns_the_header_only(bouncer):
    send(bouncer, DEMO, ["x@nowhere.example"], ORIGINAL, mail_opts=["RET=HDRS"])
    f, raw, rep = wait_reports(bouncer, 1)[0]
    check_notice_header(raw, rep, "Undelivered Mail Returned to Sender")
    _, ds, orig = parts(rep)
    _, blocks = status_blocks(ds)
    assert list(by_recipient(blocks)) == ["x@nowhere.example"]
    assert orig.get_content_type() == "text/rfc822-headers"
    headers = orig.get_content() if hasattr(orig, "get_content") else orig.get_payload()
    assert "Subject: a message that cannot arrive" in headers
    assert b"The body of the original." not in raw


def test_default_ret_returns_the_full_message(bouncer):
    send(bouncer, DEMO, ["x@nowhere.example"], ORIGINAL)
    f, raw, rep = wait_reports(bouncer, 1)[0]
    _, ds, orig = parts(rep)
    assert orig.get_content_type() == "message/rfc822"
    assert b"The body of the original." in raw
    _, blocks = status_blocks(ds)
    b = by_recipient(blocks)["x@nowhere.example"]
    assert str(b["Action"]) == "failed"
    # A deferral that expired: the report has no Will-Retry-Until.
    assert b["Will-Retry-Until"] is None


def test_null_sender_failure_goes_to_2bounce_recipient_once(bouncer):
    send(bouncer, "", ["x@nowhere.example"],
         "From: MAILER-DAEMON@elsewhere.example\r\nSubject: a bounce that cannot arrive\r\n\r\nlost\r\n")
    f, raw, rep = wait_reports(bouncer, 1)[0]
    assert raw.startswith(b"Return-Path: <>\n"), raw[:200]
    assert str(rep["To"]).strip("<>") == DEMO
    _, ds, _ = parts(rep)
    _, blocks = status_blocks(ds)
    assert "x@nowhere.example" in by_recipient(blocks)
    assert b"a bounce that cannot arrive" in raw
    # No notice to <>, no notice about the notice: exactly one, and the queue drains.
    wait_empty_queue(bouncer)
    settle(bouncer, 6)
    assert len(mailbox(bouncer)) == 1, [str(m["Subject"]) for _, _, m in mailbox(bouncer)]
    assert queue(bouncer) == []


def test_notify_never_sends_nothing(bouncer):
    send(bouncer, DEMO, ["x@nowhere.example"], ORIGINAL, rcpt_opts={"x@nowhere.example": ["NOTIFY=NEVER"]})
    wait_empty_queue(bouncer)
    settle(bouncer)
    assert reports(bouncer) == []
    assert mailbox(bouncer) == []


def test_notify_success_sends_a_delivered_report(bouncer):
    send(bouncer, DEMO, [DEMO], f"From: {DEMO}\r\nTo: {DEMO}\r\nSubject: tell me it arrived\r\n\r\nhello\r\n",
         mail_opts=["ENVID=OK42"], rcpt_opts={DEMO: ["NOTIFY=SUCCESS,FAILURE"]})
    f, raw, rep = wait_reports(bouncer, 1)[0]
    check_notice_header(raw, rep, "Successful Mail Delivery Report")
    _, ds, orig = parts(rep)
    msg_fields, blocks = status_blocks(ds)
    assert str(msg_fields["Original-Envelope-Id"]) == "OK42"
    b = by_recipient(blocks)[DEMO]
    assert str(b["Action"]) == "delivered"
    assert str(b["Status"]).startswith("2.")
    # A success report returns the header only.
    assert orig.get_content_type() == "text/rfc822-headers"
    assert b"hello" not in raw.split(b"text/rfc822-headers", 1)[1]
    wait_empty_queue(bouncer)
    settle(bouncer, 2)
    msgs = mailbox(bouncer)
    assert len(msgs) == 2  # the message itself and the one report
    assert len(reports(bouncer)) == 1


def test_default_notify_success_sends_no_report(bouncer):
    send(bouncer, DEMO, [DEMO], f"From: {DEMO}\r\nSubject: plain\r\n\r\nhello\r\n")
    flush_until(bouncer, lambda: len(mailbox(bouncer)) >= 1, 30, "the delivery")
    wait_empty_queue(bouncer)
    settle(bouncer, 2)
    assert reports(bouncer) == []
    assert len(mailbox(bouncer)) == 1


def test_bounce_is_logged_and_the_logs_are_removed(bouncer):
    qid = send(bouncer, DEMO, ["x@nowhere.example"], ORIGINAL)
    wait_reports(bouncer, 1)
    wait_empty_queue(bouncer)
    log = bouncer.log()
    assert re.search(rf"{qid}: to=<x@nowhere\.example>.*status=(bounced|expired|deferred)", log), log
    # Nothing is left of the message: no queue file and no defer/bounce log.
    leftovers = [p for sub in ("defer", "bounce", "deferred", "active", "incoming")
                 for p in (bouncer.dir / "queue" / sub).rglob(qid)]
    assert leftovers == []

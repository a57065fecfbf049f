"""smtpd, cleanup and auth together: real SMTP clients against a 'postern init' instance.

The instance's master.cf (from postern init) runs smtpd on the smtp,
submission and smtps ports with cleanup, auth and anvil; these tests
leave qmgr out, so accepted mail stays in incoming/, where postern queue
and postern cat show it exactly as it was stored.
"""
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from instance import run, wait_for
from mail import Raw, body_bytes, cat, demo_password, queue, queued_ids, tls_client_context, wait_queued

DEMO = "demo@example.test"


@pytest.fixture
def mx(inst):
    """A started instance without qmgr, so accepted mail stays in incoming/ to be looked at."""
    cf = inst.dir / "master.cf"
    cf.write_text("".join(line for line in cf.read_text().splitlines(True) if not line.startswith("qmgr ")))
    inst.smtp, inst.submission, inst.smtps = inst.ports[0], inst.ports[1], inst.ports[2]
    inst.conf(smtpd_error_sleep_time="0")
    inst.start()
    yield inst


def restart_with(inst, **params):
    inst.conf(**params)
    inst.reload()
    time.sleep(0.5)


def message(subject="test", body="Hello.\r\n"):
    return f"From: sender@example.org\r\nTo: {DEMO}\r\nSubject: {subject}\r\n\r\n{body}"


def test_ehlo_extensions(mx):
    with smtplib.SMTP("127.0.0.1", mx.smtp, timeout=20) as s:
        code, banner = s.ehlo("client.example")
        assert code == 250
        for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "starttls", "dsn", "smtputf8",
                    "chunking"):
            assert s.has_extn(ext), ext
        assert not s.has_extn("auth")  # port 25: no AUTH
        assert not s.has_extn("vrfy")
        assert s.esmtp_features["size"] == "10240000"


def test_message_is_queued_byte_exact(mx):
    body = "Line one.\r\n.leading dot\r\n..two dots\r\n8-bit: caf\xe9\r\n"
    raw = (f"From: a@example.org\r\nTo: {DEMO}\r\nSubject: exact\r\n\r\n{body}").encode("latin-1")
    with smtplib.SMTP("127.0.0.1", mx.smtp, timeout=20) as s:
        s.ehlo("client.example")
        code, resp = s.mail("a@example.org")
        assert code == 250
        code, resp = s.rcpt(DEMO)
        assert code == 250
        code, resp = s.data(raw)
        assert code == 250
        m = re.match(rb"2\.0\.0 Ok: queued as ([0-9A-V]{16})", resp)
        assert m, resp
    qid = m.group(1).decode()
    assert qid in queued_ids(mx)
    stored = body_bytes(mx, qid)
    # Our Received: header first, then the message with LF line ends and dots unstuffed.
    assert stored.startswith(b"Received: from client.example (localhost [127.0.0.1])\n")
    assert f"with ESMTP id {qid}".encode() in stored
    assert f"for <{DEMO}>;".encode() in stored
    rest = stored.split(b"\nFrom: a@example.org\n", 1)[1]
    # smtplib dot-stuffs, smtpd unstuffs: the lines arrive as written.
    assert rest == (
        f"To: {DEMO}\nSubject: exact\n\nLine one.\n.leading dot\n..two dots\n8-bit: caf\xe9\n").encode("latin-1")
    envelope = cat(mx, qid, "-e")
    assert "a@example.org" in envelope and DEMO in envelope
    mode = os.stat(mx.dir / "queue" / "incoming" / qid).st_mode & 0o777
    assert mode == 0o700
    log = mx.log()
    assert f"{qid}: client=localhost[127.0.0.1]" in log
    wait_for(lambda: re.search(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=1 quit=1 "
                               r"commands=5", mx.log()), 10, what="disconnect line")


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_to_demo_user(mx):
    proc = run(["swaks", "--to", DEMO, "--from", "swaks@example.org", "--server", f"127.0.0.1:{mx.smtp}",
                "--header", "Subject: from swaks", "--body", "swaks body"], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"queued as ([0-9A-V]{16})", proc.stdout)
    assert m, proc.stdout
    stored = body_bytes(mx, m.group(1))
    assert b"Subject: from swaks\n" in stored and b"\nswaks body\n" in stored


def test_reply_codes(mx):
    r = Raw(mx.smtp)
    assert r.reply()[0] == 220
    assert r.cmd("MAIL FROM:<a@example.org>")[0] == 250  # HELO not required by default
    assert r.cmd("RSET")[0] == 250
    code, lines = r.cmd("EHLO client.example")
    assert code == 250 and len(lines) > 5
    for cmd, want in [
        ("RCPT TO:<demo@example.test>", "503 5.5.1"),
        ("DATA", "503 5.5.1"),
        ("MAIL FROM:<a@example.org>", "250 2.1.0"),
        ("MAIL FROM:<a@example.org>", "503 5.5.1"),
        ("DATA", "554 5.5.1"),  # no valid recipients yet
        ("RCPT TO:<not an address>", "501 5.1.3"),
        ("RCPT TO:<nobody@example.test>", "550 5.1.1"),
        ("RCPT TO:<nosuchuser@localhost>", "550 5.1.1"),
        ("RCPT TO:<demo@example.test> FOO=bar", "555 5.5.4"),
        ("RCPT TO:<demo@example.test>", "250 2.1.5"),
        ("VRFY demo@example.test", "502 5.5.1"),
        ("EXPN staff", "502 5.5.1"),
        ("HELP", "214 2.0.0"),
        ("NOOP", "250 2.0.0"),
        ("FOOBAR", "500 5.5.2"),
        ("HELO", "501 5.5.4"),
        ("RSET", "250 2.0.0"),
        ("MAIL FROM:<a@example.org> SIZE=abc", "501 5.5.4"),
        ("MAIL FROM:<a@example.org> BODY=BINARYMIME", "555 5.5.4"),
        ("QUIT", "221 2.0.0"),
    ]:
        code, lines = r.cmd(cmd)
        assert lines[-1].startswith(want), (cmd, lines)
    assert r.closed()


def test_vrfy_when_enabled(mx):
    restart_with(mx, disable_vrfy_command="no")
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    assert r.cmd("VRFY <demo@example.test>")[1][0].startswith("252 2.0.0")
    assert r.cmd("VRFY <nobody@example.test>")[1][0].startswith("550 5.1.1")
    r.close()


def test_relay_refused_outside_mynetworks_and_allowed_after_auth(mx):
    restart_with(mx, mynetworks="192.0.2.0/24")
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    r.cmd("MAIL FROM:<a@example.org>")
    code, lines = r.cmd("RCPT TO:<someone@elsewhere.example>")
    assert lines[0].startswith("454 4.7.1") and "Relay access denied" in lines[0]
    assert r.cmd(f"RCPT TO:<{DEMO}>")[0] == 250  # our own domain is fine
    r.close()
    assert re.search(r"NOQUEUE: defer: RCPT from localhost\[127\.0\.0\.1\]: 454 4\.7\.1 "
                     r"<someone@elsewhere\.example>: Relay access denied; from=<a@example\.org> "
                     r"to=<someone@elsewhere\.example> proto=ESMTP helo=<c>", mx.log())
    # Submission: STARTTLS, AUTH, then relaying is allowed.
    with smtplib.SMTP("127.0.0.1", mx.submission, timeout=20) as s:
        s.starttls(context=tls_client_context())
        s.login(DEMO, demo_password(mx))
        s.mail(DEMO)
        code, _ = s.rcpt("someone@elsewhere.example")
        assert code == 250


def test_submission_requires_tls_before_auth_and_mail(mx):
    r = Raw(mx.submission)
    r.reply()
    code, lines = r.cmd("EHLO c")
    assert not any("AUTH" in ln for ln in lines)
    assert any("STARTTLS" in ln for ln in lines)
    assert r.cmd("AUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHg=")[1][0].startswith("538 5.7.11")
    assert r.cmd("MAIL FROM:<demo@example.test>")[1][0].startswith("530 5.7.0")
    r.starttls()
    code, lines = r.cmd("EHLO c")
    assert any(ln[4:].startswith("AUTH PLAIN LOGIN") for ln in lines), lines
    assert not any("STARTTLS" in ln for ln in lines)
    r.close()


def test_auth_success_and_failure(mx):
    import base64

    pw = demo_password(mx)
    r = Raw(mx.submission)
    r.reply()
    r.cmd("EHLO c")
    r.starttls()
    r.cmd("EHLO c")
    bad = base64.b64encode(f"\0{DEMO}\0Guess-Tr0ub4dor".encode()).decode()
    assert r.cmd(f"AUTH PLAIN {bad}")[1][0].startswith("535 5.7.8")
    # LOGIN with challenges
    assert r.cmd("AUTH LOGIN")[1][0] == "334 VXNlcm5hbWU6"
    assert r.cmd(base64.b64encode(DEMO.encode()).decode())[1][0] == "334 UGFzc3dvcmQ6"
    assert r.cmd(base64.b64encode(pw.encode()).decode())[1][0].startswith("235 2.7.0")
    assert r.cmd("AUTH PLAIN")[1][0].startswith("503 5.5.1")  # already authenticated
    r.cmd("MAIL FROM:<demo@example.test>")
    assert r.cmd("RCPT TO:<x@elsewhere.example>")[0] == 250
    r.close()
    log = mx.log()
    assert "SASL PLAIN authentication failed" in log
    assert pw not in log and "Guess-Tr0ub4dor" not in log


def test_sender_login_mismatch_refused_on_submission(mx):
    with smtplib.SMTP("127.0.0.1", mx.submission, timeout=20) as s:
        s.starttls(context=tls_client_context())
        s.login(DEMO, demo_password(mx))
        s.mail("other@example.test")
        code, resp = s.rcpt(DEMO)
        assert code == 553 and b"5.7.1" in resp and b"not owned by user" in resp
        s.rset()
        s.mail(DEMO)
        assert s.rcpt(DEMO)[0] == 250


def test_smtps_implicit_tls(mx):
    with smtplib.SMTP_SSL("127.0.0.1", mx.smtps, timeout=20, context=tls_client_context()) as s:
        s.ehlo("c")
        assert s.has_extn("auth")
        s.login(DEMO, demo_password(mx))
        resp = s.sendmail(DEMO, [DEMO], message("over 465"))
        assert resp == {}
    msgs = wait_queued(mx, 1)
    stored = body_bytes(mx, msgs[0]["queue_id"])
    assert re.search(rb"with ESMTPSA id [0-9A-V]{16}", stored)
    assert re.search(rb"\(using TLSv1\.[23] with cipher \S+ \(\d+ bits\)\)", stored)


def test_starttls_command_injection_is_discarded(mx):
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    r.send("STARTTLS\r\nRSET\r\n")
    assert r.reply()[0] == 220
    r.sock = tls_client_context().wrap_socket(r.sock)
    r.pending = b""
    # Had RSET survived the handshake, its "250 2.0.0 Ok" would come first.
    code, lines = r.cmd("EHLO c")
    assert code == 250 and lines[0].startswith("250-"), lines
    r.close()


SMUGGLING = [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n"]


@pytest.mark.parametrize("variant", SMUGGLING, ids=["LF.LF", "LF.CRLF", "CR.CRLF", "CRLF.LF"])
def test_smuggling_yields_one_message(mx, variant):
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    r.cmd("MAIL FROM:<a@example.org>")
    r.cmd(f"RCPT TO:<{DEMO}>")
    assert r.cmd("DATA")[0] == 354
    smuggled = (b"Subject: outer\r\n\r\nfirst part" + variant +
                b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nsecond\r\n.\r\n")
    r.send(smuggled)
    code, lines = r.reply()
    if code == 250:
        # Normalized: the rest is content of the same message, ended by the last CRLF.CRLF.
        assert r.cmd("QUIT")[0] == 221
        msgs = wait_queued(mx, 1)
        time.sleep(0.5)
        msgs = queue(mx)
        assert len(msgs) == 1
        stored = body_bytes(mx, msgs[0]["queue_id"])
        assert b"Subject: smuggled" in stored and b"MAIL FROM:<evil@example.org>" in stored
        assert [m["sender"] for m in msgs] == ["a@example.org"]
    else:
        assert code in (550, 554), lines
        assert queue(mx) == []
    r.close()


def test_bare_lf_reject_mode(mx):
    restart_with(mx, smtpd_forbid_bare_newline="reject")
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    r.cmd("MAIL FROM:<a@example.org>")
    r.cmd(f"RCPT TO:<{DEMO}>")
    r.cmd("DATA")
    r.send(b"Subject: x\r\n\r\nbare\nlf\r\n.\r\n")
    code, lines = r.reply()
    assert lines[0].startswith("550 5.5.2"), lines
    assert queue(mx) == []
    r.close()


def test_unauthorised_pipelining_disconnects(mx):
    r = Raw(mx.smtp)
    r.reply()
    r.send("HELO c\r\nMAIL FROM:<a@example.org>\r\n")
    code, lines = r.reply()
    assert lines[0].startswith("554 5.5.0"), lines
    assert r.closed()
    # Before the greeting is answered by EHLO: EHLO must end its group too.
    r = Raw(mx.smtp)
    r.reply()
    r.send("EHLO c\r\nMAIL FROM:<a@example.org>\r\n")
    assert r.reply()[1][0].startswith("554 5.5.0")
    assert r.closed()


def test_pipelined_transactions(mx):
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    for i in range(3):
        r.send(f"MAIL FROM:<a@example.org>\r\nRCPT TO:<{DEMO}>\r\nRCPT TO:<root@localhost>\r\nDATA\r\n")
        assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        r.send(f"Subject: pipelined {i}\r\n\r\nbody {i}\r\n.\r\n")
        assert r.reply()[0] == 250
    r.send("RSET\r\nNOOP\r\nQUIT\r\n")
    assert [r.reply()[0] for _ in range(3)] == [250, 250, 221]
    msgs = wait_queued(mx, 3)
    assert len(msgs) == 3
    assert all(sorted(x["address"] for x in m["recipients"]) == sorted([DEMO, "root@localhost"]) for m in msgs)


def test_size_limit_at_mail_and_end_of_data(mx):
    restart_with(mx, message_size_limit="2000")
    r = Raw(mx.smtp)
    r.reply()
    code, lines = r.cmd("EHLO c")
    assert "250-SIZE 2000" in lines
    assert r.cmd("MAIL FROM:<a@example.org> SIZE=5000")[1][0].startswith("552 5.3.4")
    assert r.cmd("MAIL FROM:<a@example.org> SIZE=100")[0] == 250
    r.cmd(f"RCPT TO:<{DEMO}>")
    r.cmd("DATA")
    r.send("Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * 100 + ".\r\n")
    assert r.reply()[1][0].startswith("552 5.3.4")
    # The session goes on after the rejection.
    assert r.cmd("NOOP")[0] == 250
    r.close()
    assert queue(mx) == []


def test_table_try_again_gives_451(mx):
    restart_with(mx, virtual_mailbox_maps="hash:/nonexistent/table")
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    r.cmd("MAIL FROM:<a@example.org>")
    code, lines = r.cmd(f"RCPT TO:<{DEMO}>")
    assert lines[0].startswith("451 4.3.0"), lines
    r.close()


def test_client_disconnect_mid_data_leaves_nothing(mx):
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    r.cmd("MAIL FROM:<a@example.org>")
    r.cmd(f"RCPT TO:<{DEMO}>")
    r.cmd("DATA")
    r.send("Subject: cut\r\n\r\npartial content without end")
    r.close()
    wait_for(lambda: "lost connection after DATA" in mx.log(), 10, what="lost connection log line")
    time.sleep(0.3)
    assert queue(mx) == []
    assert os.listdir(mx.dir / "queue" / "incoming") == []


def test_200_parallel_clients_each_queued_once(mx):
    n = 200
    results = [None] * n

    def one(i):
        try:
            with smtplib.SMTP("127.0.0.1", mx.smtp, timeout=60) as s:
                s.sendmail("a@example.org", [DEMO], message(f"parallel {i}"))
            results[i] = "ok"
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = repr(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results.count("ok") == n, [r for r in results if r != "ok"][:5]
    msgs = queue(mx)
    assert len(msgs) == n
    subjects = []
    for m in msgs:
        stored = body_bytes(mx, m["queue_id"])
        subjects.append(re.search(rb"Subject: (parallel \d+)", stored).group(1))
    assert len(set(subjects)) == n


def test_bdat_chunks(mx):
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    r.cmd("MAIL FROM:<a@example.org>")
    r.cmd(f"RCPT TO:<{DEMO}>")
    part1 = b"Subject: chunked\r\n\r\nline one\r"
    part2 = b"\nline two\r\n.not stuffed\r\n"
    r.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert r.reply()[1][0].startswith("250 2.0.0")
    r.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    code, lines = r.reply()
    assert code == 250 and "queued as" in lines[0]
    qid = lines[0].split()[-1]
    stored = body_bytes(mx, qid)
    assert stored.endswith(b"Subject: chunked\n\nline one\nline two\n.not stuffed\n")
    assert b"with ESMTP id" in stored
    # BDAT without a transaction: the chunk is read and refused, the session continues.
    r.send(b"BDAT 5 LAST\r\nhello")
    assert r.reply()[1][0].startswith("503 5.5.1")
    assert r.cmd("NOOP")[0] == 250
    r.close()


def test_dsn_and_smtputf8_parameters_are_stored(mx):
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    assert r.cmd("MAIL FROM:<a@example.org> RET=HDRS ENVID=env+2Bid+0D+0A+00x")[0] == 250
    assert r.cmd(f"RCPT TO:<{DEMO}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;demo+40example.test+0D+0A")[0] == 250
    r.cmd("DATA")
    r.send("Subject: dsn\r\n\r\nx\r\n.\r\n")
    qid = r.reply()[1][0].split()[-1]
    env = cat(mx, qid, "-e")
    assert "env+2Bid+0D+0A+00x" in env  # xtext kept exactly as received
    assert "rfc822;demo+40example.test+0D+0A" in env
    assert "HDRS" in env
    # SMTPUTF8
    assert r.cmd("MAIL FROM:<j\u00fcrgen@example.org> SMTPUTF8")[0] == 250
    assert r.cmd(f"RCPT TO:<{DEMO}>")[0] == 250
    r.cmd("DATA")
    r.send("Subject: utf8\r\n\r\nx\r\n.\r\n")
    code, lines = r.reply()
    assert code == 250
    qid = lines[0].split()[-1]
    assert "j\u00fcrgen@example.org" in cat(mx, qid, "-e")
    assert re.search(rb"with UTF8SMTP id", body_bytes(mx, qid))
    r.close()


def test_hostile_command_lines(mx):
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    assert r.cmd("NOOP\0hidden")[0] == 500
    assert r.cmd("X" * 65536)[1][0].startswith("500 5.5.2")
    assert r.cmd("NOOP")[0] == 250  # still in sync
    assert r.cmd('MAIL FROM:<"`rm -rf /`$(id)|{{7*7}}"@example.org>')[0] == 250
    assert r.cmd(f"RCPT TO:<{DEMO}>")[0] == 250
    r.cmd("DATA")
    r.send(b"Subject: long line\r\n\r\n" + b"y" * (1024 * 1024) + b"\r\n.\r\n")
    code, lines = r.reply()
    assert code == 250
    qid = lines[0].split()[-1]
    assert b"y" * (1024 * 1024) + b"\n" in body_bytes(mx, qid)
    assert '"`rm -rf /`$(id)|{{7*7}}"@example.org' in cat(mx, qid, "-e")
    r.close()


def test_error_limits_disconnect(mx):
    restart_with(mx, smtpd_hard_error_limit="3")
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    for _ in range(3):
        assert r.cmd("BOGUS")[0] == 500
    # The third error's own reply, then the goodbye.
    assert r.reply()[1][0].startswith("421 4.7.0")
    assert r.closed()


def test_many_recipients_bounded(mx):
    restart_with(mx, smtpd_recipient_limit="50", smtpd_hard_error_limit="1000", recipient_delimiter="+")
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    r.cmd("MAIL FROM:<a@example.org>")
    r.send("".join(f"RCPT TO:<demo+{i}@example.test>\r\n" for i in range(500)))
    codes = [r.reply()[0] for _ in range(500)]
    assert codes[:50] == [250] * 50
    assert set(codes[50:]) == {452}
    assert r.cmd("NOOP")[0] == 250
    r.close()


def test_connection_count_limit(mx):
    restart_with(mx, mynetworks="192.0.2.0/24", smtpd_client_connection_count_limit="2")
    held = [Raw(mx.smtp) for _ in range(2)]
    for h in held:
        assert h.reply()[0] == 220
    third = Raw(mx.smtp)
    code, lines = third.reply()
    assert lines[0].startswith("421 4.7.0"), lines
    for h in held:
        h.close()
    third.close()
    # Once they are gone, new clients are welcome again.
    wait_for(lambda: Raw(mx.smtp).reply()[0] == 220, 10, what="a slot after disconnects")


def test_rcpt_check_access_tables(mx):
    restart_with(mx, smtpd_recipient_restrictions=(
        "check_sender_access inline:{{ spam@example.org = REJECT go away }, "
        "slow@example.org=DEFER, { code@example.org = 550 5.7.9 custom text }}"))
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    for sender, want in [("spam@example.org", "554 5.7.1"), ("slow@example.org", "450 4.7.1"),
                         ("code@example.org", "550 5.7.9"), ("fine@example.org", "250 2.1.5")]:
        r.cmd("RSET")
        r.cmd(f"MAIL FROM:<{sender}>")
        lines = r.cmd(f"RCPT TO:<{DEMO}>")[1]
        assert lines[0].startswith(want), (sender, lines)
    r.close()


def test_connection_rate_limit(mx):
    restart_with(mx, mynetworks="192.0.2.0/24", smtpd_client_connection_rate_limit="3")
    for _ in range(3):
        c = Raw(mx.smtp)
        assert c.reply()[0] == 220
        c.cmd("QUIT")
        c.close()
    c = Raw(mx.smtp)
    code, lines = c.reply()
    assert lines[0].startswith("421 4.7.0"), lines
    c.close()
    assert "Connection rate limit exceeded: 4 from localhost[127.0.0.1]" in mx.log()

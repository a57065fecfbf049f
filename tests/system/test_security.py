"""The security regression suite: one test per attack in
../shared/research/features.md section 3 (its "top 12" list and the
"next to write" list), replayed against a running instance.

Each test is named after what it replays; the CVE or incident it comes
from is in its docstring.  Some cases are covered in depth by the test
module of the program concerned; they are listed here, not repeated:

- local delivery file safety (CVE-2008-2936, OpenSMTPD 2015, Exim
  28007/28008): test_local.py test_unsafe_mailboxes_are_deferred,
  test_unsafe_maildir_is_deferred, test_dotforward, test_include_files
  (test_file_safety_cases_exist checks they are still there);
- the smtp client's side of STARTTLS injection, hostile multi-line
  replies and NUL/CR in replies (CVE-2011-0411, CVE-2020-8794):
  test_smtp.py test_starttls_response_injection_is_discarded,
  test_huge_and_hostile_replies, test_nul_and_cr_in_a_reply,
  test_reply_without_last_line_and_trickle_time_out;
- size and count limits (64 KiB EHLO, 1 MiB lines, 100k header lines,
  10^6 RCPTs, deep MIME): test_exhaustion.py;
- the parsers themselves: tests/fuzz/.

What is checked is what an attacker would see or cause: reply codes,
whether a connection is dropped, what is in the queue, files that must
never appear, and that no daemon crashed (no "panic", "fatal" or signal
lines in the log).
"""
import base64
import os
import pathlib
import pwd
import random
import re
import select
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

import ipcwire
from instance import pid_alive, run, wait_for
from ipcwire import encode
from mail import Raw, demo_password, queue, tls_client_context, wait_queued

ROOT = os.geteuid() == 0
DEMO = "demo@example.test"
HOST = "mail.example.test"
CRASH = re.compile(r"panic:|fatal:|killed by signal|dumped core|terminated abnormally|AddressSanitizer|runtime error")


# ---------------------------------------------------------------- instances


def drop_service(inst, name):
    """Remove a service (and its continuation lines) from master.cf."""
    out, skip = [], False
    for line in (inst.dir / "master.cf").read_text().splitlines(True):
        if line[:1].isspace() and skip:
            continue
        skip = line.split()[:1] == [name]
        if not skip:
            out.append(line)
    (inst.dir / "master.cf").write_text("".join(out))


def set_ports(inst):
    inst.smtp, inst.submission, inst.smtps, inst.pop3, inst.pop3s = inst.ports


@pytest.fixture
def mx(inst):
    """Started, without qmgr: accepted mail stays in incoming/ to be looked at."""
    drop_service(inst, "qmgr")
    set_ports(inst)
    inst.conf(smtpd_error_sleep_time="0")
    inst.start()
    yield inst
    assert not CRASH.search(inst.log()), CRASH.search(inst.log())


@pytest.fixture
def live(inst):
    """Started with everything, local aliases and commands in a texthash table, an output directory."""
    set_ports(inst)
    inst.out = inst.dir / "out"
    inst.out.mkdir()
    os.chmod(inst.out, 0o1777)
    inst.conf(smtpd_error_sleep_time="0", minimal_backoff_time="1s", maximal_backoff_time="2s",
              queue_run_delay="1s")
    yield inst
    assert not CRASH.search(inst.log()), CRASH.search(inst.log())


def set_aliases(inst, text):
    """The instance's aliases file (hash:DIR/aliases) with these entries added, rebuilt."""
    (inst.dir / "aliases").write_text("postmaster: demo@example.test\n" + text.replace("OUT", str(inst.out)))
    run([inst.postern, "-c", inst.dir, "map", "-a", inst.dir / "aliases"], check=True)


def smtp_session(port, helo="client.example", tls=False):
    r = Raw(port, timeout=30)
    assert r.reply()[0] == 220
    assert r.cmd(f"EHLO {helo}")[0] == 250
    if tls:
        r.starttls()
        assert r.cmd(f"EHLO {helo}")[0] == 250
    return r


def send_raw(port, sender, rcpts, body, params="", rparams=""):
    """One message by raw SMTP; the end-of-data reply (code, last line)."""
    r = smtp_session(port)
    try:
        code, lines = r.cmd(f"MAIL FROM:<{sender}>{params}")
        if code != 250:
            return code, lines[-1]
        for rc in rcpts:
            code, lines = r.cmd(f"RCPT TO:<{rc}>{rparams}")
            if code != 250:
                return code, lines[-1]
        assert r.cmd("DATA")[0] == 354
        r.send(body.replace(b"\n", b"\r\n") + b".\r\n")
        code, lines = r.reply()
        r.cmd("QUIT")
        return code, lines[-1]
    finally:
        r.close()


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


# ---------------------------------------------------------------- 1. STARTTLS / STLS injection


def test_starttls_plaintext_injection_is_discarded(mx):
    """CVE-2011-0411, CVE-2021-33515: commands behind STARTTLS in the same
    packet must not be answered after the handshake; EHLO state is reset.
    On the MX port and on submission."""
    for which in ("smtp", "submission"):
        starttls_injection(mx, which)


def starttls_injection(mx, which):
    port = getattr(mx, which)
    r = Raw(port)
    r.reply()
    r.cmd("EHLO c")
    r.send("STARTTLS\r\nEHLO injected\r\nMAIL FROM:<evil@example.org>\r\n")
    assert r.reply()[0] == 220
    r.sock = tls_client_context().wrap_socket(r.sock)
    r.pending = b""
    # Had the injected EHLO survived, the first answer would be its multi-line 250.
    code, lines = r.cmd("NOOP")
    assert code == 250 and lines == ["250 2.0.0 Ok"], lines
    # The session starts over: the EHLO before TLS is forgotten, so ESMTP parameters need a new one.
    code, lines = r.cmd("MAIL FROM:<a@example.org> SIZE=10")
    assert code == 555 or (which == "submission" and code == 530), lines
    r.cmd("RSET")
    code, lines = r.cmd("EHLO c")
    assert code == 250 and not any("STARTTLS" in ln for ln in lines)
    if which == "submission":
        assert any(ln[4:].startswith("AUTH") for ln in lines), lines
    r.close()
    assert queue(mx) == []


def test_stls_plaintext_injection_is_discarded(mx):
    """CVE-2011-0411 on POP3: a USER behind STLS must not count after TLS,
    so a PASS alone cannot log in."""
    r = Pop(mx.pop3)
    r.send(f"STLS\r\nUSER {DEMO}\r\n")
    assert r.line().startswith("+OK")
    r.sock = tls_client_context().wrap_socket(r.sock)
    r.pending = b""
    assert r.cmd(f"PASS {demo_password(mx)}").startswith("-ERR")
    assert r.cmd(f"USER {DEMO}").startswith("+OK")
    assert r.cmd(f"PASS {demo_password(mx)}").startswith("+OK")
    r.cmd("QUIT")


def test_smtp_client_injection_cases_exist():
    """The smtp client's side of CVE-2011-0411 and CVE-2020-8794 lives in test_smtp.py."""
    here = pathlib.Path(__file__).parent
    if not (here / "test_smtp.py").exists():
        pytest.skip("no smtp client in this tree")
    text = (here / "test_smtp.py").read_text()
    for name in ("test_starttls_response_injection_is_discarded", "test_huge_and_hostile_replies",
                 "test_wire_bytes_crlf_dot_stuffing_and_long_lines", "test_8bit_downgrade_for_a_7bit_server",
                 "test_nul_and_cr_in_a_reply", "test_reply_without_last_line_and_trickle_time_out"):
        assert f"def {name}(" in text, name


# ---------------------------------------------------------------- 2. SMTP smuggling

SMUGGLE = (b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n"
           b"From: ceo@example.test\r\nSubject: smuggled\r\n\r\nwire money\r\n.\r\n")


VARIANTS = [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n"]  # LF.LF, LF.CRLF, CR.CRLF, CRLF.LF


def test_smuggling_gives_at_most_one_message(mx):
    """CVE-2023-51764/5/6: a non-standard end of data followed by a second
    transaction in the same stream, for the four variants and both bare-LF
    policies.  At most one message is queued per attempt, never one from
    the smuggled sender; with "reject" a bare LF refuses the message."""
    for policy in ("normalize", "reject"):
        if policy != "normalize":
            mx.conf(smtpd_forbid_bare_newline=policy)
            mx.reload()
            time.sleep(0.5)
        for variant in VARIANTS:
            before = len(queue(mx))
            r = smtp_session(mx.smtp)
            r.cmd("MAIL FROM:<a@example.org>")
            r.cmd(f"RCPT TO:<{DEMO}>")
            assert r.cmd("DATA")[0] == 354
            r.send(b"Subject: outer\r\n\r\nfirst part" + variant + SMUGGLE)
            code, lines = r.reply()
            r.close()
            time.sleep(0.3)
            msgs = queue(mx)
            assert len(msgs) - before <= 1, (policy, variant, msgs)
            assert all(m["sender"] == "a@example.org" for m in msgs), (policy, variant, msgs)
            if policy == "reject" and b"\n" in variant.replace(b"\r\n", b""):
                assert code == 550 and len(msgs) == before, (variant, lines)


def test_bdat_chunk_dot_is_data(mx):
    """SMTP smuggling, BDAT variant: CRLF.CRLF inside a chunk is data."""
    r = smtp_session(mx.smtp)
    r.cmd("MAIL FROM:<a@example.org>")
    r.cmd(f"RCPT TO:<{DEMO}>")
    chunk = b"Subject: bdat\r\n\r\nbefore\r\n.\r\n" + SMUGGLE
    r.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    code, lines = r.reply()
    assert code == 250, lines
    assert r.cmd("NOOP")[0] == 250  # in sync: nothing of the chunk was read as a command
    r.close()
    msgs = wait_queued(mx, 1)
    time.sleep(0.5)
    msgs = queue(mx)
    assert len(msgs) == 1 and msgs[0]["sender"] == "a@example.org"
    stored = run([mx.postern, "-c", mx.dir, "cat", "-hb", msgs[0]["queue_id"]]).stdout
    assert "MAIL FROM:<evil@example.org>" in stored


# ---------------------------------------------------------------- 3. unauthorised pipelining, early talkers


def test_pipelined_batch_after_helo_is_refused(mx):
    """Postfix 3.9 smtpd_forbid_unauth_pipelining: HELO (no PIPELINING) then
    a whole transaction in one write."""
    r = Raw(mx.smtp)
    r.reply()
    r.send("HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n")
    code, lines = r.reply()
    assert lines[0].startswith("554 5.5.0"), lines
    assert r.closed()
    assert re.search(r"improper command pipelining after HELO from localhost\[127\.0\.0\.1\]", mx.log())
    assert queue(mx) == []


def test_talking_before_the_greeting_is_refused(inst):
    """Early talkers (spam bots that do not wait for 220): a command sent
    before the greeting gets 554 5.5.0 and the connection is closed.  The
    smtpd is kept busy so that the second client's EHLO is sure to be
    waiting when its greeting would be sent."""
    set_ports(inst)
    drop_service(inst, "qmgr")
    cf = inst.dir / "master.cf"
    cf.write_text(re.sub(rf"^(127\.0\.0\.1:{inst.smtp}\s+inet\s+\S+\s+\S+\s+\S+\s+\S+\s+)-", r"\g<1>1",
                         cf.read_text(), flags=re.M))
    inst.conf(smtpd_error_sleep_time="0")
    inst.start()
    busy = Raw(inst.smtp)
    assert busy.reply()[0] == 220
    early = socket.create_connection(("127.0.0.1", inst.smtp), timeout=20)
    early.sendall(b"EHLO early.example\r\n")
    time.sleep(0.5)
    busy.cmd("QUIT")
    busy.close()
    data = b""
    early.settimeout(20)
    try:
        while True:
            d = early.recv(4096)
            if not d:
                break
            data += d
    except ConnectionResetError:
        pass  # closed with our EHLO unread: the reply came first
    early.close()
    assert b"554 5.5.0" in data, data
    assert b"250" not in data, data
    assert re.search(r"improper command pipelining before the greeting from localhost\[127\.0\.0\.1\]", inst.log())
    # A polite client is served as usual.
    r = smtp_session(inst.smtp)
    r.close()
    assert not CRASH.search(inst.log())


def test_proxy_header_from_untrusted_client_is_not_believed(mx):
    """Exim CVE-2023-42114-style PROXY confusion: a PROXY line from a client
    that was not configured as a proxy is just a bad command; the client
    address stays what the socket says."""
    r = Raw(mx.smtp)
    r.reply()
    r.send("PROXY TCP4 192.0.2.66 192.0.2.1 4444 25\r\n")
    code, _ = r.reply()
    assert code >= 500
    r.close()
    r = Raw(mx.smtp)
    r.reply()
    r.send(b"\r\n\r\n\0\r\nQUIT\n\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a")  # PROXY v2 signature
    r.closed(timeout=5)
    r.close()
    assert "192.0.2.66" not in mx.log()


def test_backdoor_commands_vrfy_expn_etrn(mx):
    """1988 DEBUG/WIZ; VRFY/EXPN off by default; ETRN with quotes (CVE-2025-26794)."""
    r = smtp_session(mx.smtp)
    for cmd in ("WIZ", "DEBUG", "KILL", "SHELL", "TURN", "ETRN #a'b", "EXPN root", "VRFY root"):
        code, lines = r.cmd(cmd)
        assert 500 <= code <= 504, (cmd, lines)
    assert r.cmd("NOOP")[0] == 250
    r.close()


def test_bang_dot_addresses(mx):
    """CVE-2003-0540: ".!" in addresses locked up Postfix's queue manager."""
    r = smtp_session(mx.smtp)
    assert r.cmd("MAIL FROM:<.!>")[0] == 501
    assert r.cmd("MAIL FROM:<a@example.org>")[0] == 250
    code, _ = r.cmd("RCPT TO:<a.!@x.example>")
    assert code in (250, 501, 550, 554)  # loopback may relay; what matters is an answer
    assert r.cmd("NOOP")[0] == 250
    r.close()


def test_unknown_recipient_is_refused_not_bounced(mx):
    """qmail's accept-then-bounce backscatter: an unknown recipient gets 550 at RCPT."""
    r = smtp_session(mx.smtp)
    r.cmd("MAIL FROM:<victim@example.org>")
    for rcpt in ("nobody-here@example.test", "no-such-user-here@localhost"):
        code, lines = r.cmd(f"RCPT TO:<{rcpt}>")
        assert code == 550, lines
    r.close()
    assert queue(mx) == []


# ---------------------------------------------------------------- 4, 5. shell and template metacharacters


SHELLY = ["`touch${IFS}OUT/bt1`@example.org", "|touch${IFS}OUT/pipe@example.org", '"$(touch OUT/ds1)"@example.org',
          '"() { :;}; /usr/bin/touch OUT/shock"@example.org', '"${run{/bin/sh -c \\"touch OUT/run\\"}}"@example.org',
          "{{7*7}}$HOME@example.org", '";touch OUT/semi;"@example.org']


def test_shell_metacharacters_in_the_envelope_run_nothing(live):
    """CVE-2020-7247 (OpenSMTPD), Shellshock through pipes, CVE-2019-10149
    (Exim ${run}): envelope senders full of shell and template syntax are
    delivered to a pipe and to a Maildir as plain data.  The pipe command
    is run without a shell; nothing named in the addresses is created."""
    set_aliases(live, "pipe: |/bin/bash -c true\nrecord: \"|/usr/bin/env > OUT/env.$$\"\n")
    live.start()
    r = smtp_session(live.smtp)
    # Not addresses at all: refused at MAIL.
    for bad in ("<;sleep 66;>", "<$(id)@x.example>", "<a@b.example;id>", "<`id`>"):
        assert r.cmd(f"MAIL FROM:{bad}")[0] == 501, bad
    r.close()
    accepted = 0
    for sender in SHELLY:
        sender = sender.replace("OUT", str(live.out))
        code, text = send_raw(live.smtp, sender, ["pipe@localhost", "record@localhost", DEMO],
                              b"Subject: shell\n\nbody\n")
        if code == 250:
            accepted += 1
        else:
            assert code == 501, (sender, text)
    assert accepted >= 4
    wait_for(lambda: queue(live) == [], 60, interval=0.5, what="every message delivered")
    made = sorted(os.listdir(live.out))
    envs = [m for m in made if m.startswith("env.")]
    assert set(made) == set(envs), made
    assert len(envs) == accepted
    for e in envs:
        env = (live.out / e).read_text(errors="replace")
        assert not re.search(r"^(LD_|BASH_FUNC)", env, re.M), env
    assert not re.search(r"status=bounced", live.log())


def test_template_in_recipient_is_not_evaluated_now_or_at_bounce_time(live):
    """CVE-2019-10149: ${run{...}} in a recipient local part, immediately
    (550) and through the deferred and bounce paths (a sender made of
    template syntax receives the bounce of a failed pipe)."""
    # A short absolute path: the local part must fit in 64 bytes to get as far as delivery.
    marker = pathlib.Path(f"/tmp/pw{os.getpid() % 100000}")
    set_aliases(live, "fails: \"|exit 67\"\n")
    live.start()
    r = smtp_session(live.smtp)
    r.cmd("MAIL FROM:<a@example.org>")
    code, lines = r.cmd(f'RCPT TO:<"${{run{{/bin/sh -c \\"id>{marker}\\"}}}}"@localhost>')
    assert code == 550, lines
    code, lines = r.cmd("RCPT TO:<${run{x}}@localhost>")
    assert code == 550, lines
    r.close()
    # The bounce path: the sender is template syntax in our own domain, so the bounce comes back here.
    code, text = send_raw(live.smtp, '"${run{/bin/sh -c \\"id>' + str(marker) + '\\"}}"@example.test',
                          ["fails@localhost"], b"Subject: will bounce\n\nbody\n")
    assert code == 250, text
    wait_for(lambda: re.search(r"to=<fails@localhost>.*status=bounced", live.log()), 60,
             what="the bounce")
    wait_for(lambda: queue(live) == [], 60, interval=0.5, what="an empty queue")
    assert not marker.exists()
    assert not CRASH.search(live.log())


@pytest.mark.skipif(not ROOT, reason="needs a system user with a home directory")
def test_forward_path_values_are_single_pass_and_filtered(live):
    """CVE-2019-13917: a value from the address is inserted once, never
    expanded again, and cannot steer the path ('/' and '..' replaced)."""
    fwd = live.dir / "forward"
    fwd.mkdir(mode=0o755)
    user = "daemon"
    uid = pwd.getpwnam(user).pw_uid
    literal = fwd / f"{user}+$home"
    literal.write_text(f"\"|/bin/sh -c 'echo literal > {live.out}/ext'\"\n")
    os.chown(literal, uid, -1)
    live.conf(forward_path=f"{fwd}/$user+$extension", recipient_delimiter="+",
              mail_spool_directory=str(live.dir / "spool"))
    (live.dir / "spool").mkdir(mode=0o1777)
    live.start()
    code, text = send_raw(live.smtp, "a@example.org", [f"{user}+$home@localhost"], b"Subject: ext\n\nx\n")
    assert code == 250, text
    code, text = send_raw(live.smtp, "a@example.org", [f'"{user}+.."@localhost'], b"Subject: dots\n\nx\n")
    assert code == 250, text
    wait_for(lambda: (live.out / "ext").exists(), 60, what="the literal .forward used")
    assert (live.out / "ext").read_text().strip() == "literal"
    wait_for(lambda: queue(live) == [], 60, interval=0.5, what="an empty queue")


# ---------------------------------------------------------------- 6. newlines and NUL in queue records


def records(path):
    """(type, payload) of every record of a queue file (doc/queue-format.md)."""
    data = pathlib.Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        t = chr(data[pos])
        n, shift, pos = 0, 0, pos + 1
        while True:
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out.append((t, data[pos:pos + n]))
        pos += n
    return out


def test_crlf_nul_in_esmtp_parameters_round_trip(mx):
    """Exim 21Nails 28015/28021/28026, CVE-2019-15846: xtext-encoded CR, LF
    and NUL in AUTH=, ENVID= and ORCPT= stay xtext in the queue file: the
    record count and types are those of an ordinary message and the
    values are exactly what the client sent."""
    r = smtp_session(mx.smtp, helo="helo.example")
    assert r.cmd("MAIL FROM:<a@example.org> AUTH=a+0Ab ENVID=x+0D+0Ay+00z RET=HDRS")[0] == 250
    assert r.cmd(f"RCPT TO:<{DEMO}> NOTIFY=FAILURE ORCPT=rfc822;x+0AR+20evil+0D+0A.")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: params\r\n\r\nbody\r\n.\r\n")
    code, lines = r.reply()
    assert code == 250, lines
    r.close()
    qid = lines[0].split()[-1]
    recs = records(mx.dir / "queue" / "incoming" / qid)
    types = "".join(t for t, _ in recs)
    # One ordinary message: version, time, sender, attributes, one recipient, the content, the end.
    assert re.fullmatch(r"VTSA*RMC+E", types), types
    attrs = dict(p.split(b"=", 1) for t, p in recs if t == "A")
    assert attrs[b"envid"] == b"x+0D+0Ay+00z"
    assert attrs[b"helo"] == b"helo.example"
    rcpt = [p for t, p in recs if t == "R"][0].split(b"\0")
    assert rcpt[0] == DEMO.encode()
    assert b"orcpt=rfc822;x+0AR+20evil+0D+0A." in rcpt
    for t, p in recs:
        if t != "C":
            assert b"\n" not in p and b"\r" not in p, (t, p)
    shown = run([mx.postern, "-c", mx.dir, "cat", "-e", qid]).stdout
    assert "x+0D+0Ay+00z" in shown or "x\\x0d\\x0ay" in shown.lower()
    assert "\nR evil" not in shown


def test_sni_with_backslash(mx):
    """CVE-2019-15846: a TLS SNI ending in a backslash."""
    for sni in ("a\\", "a\\\\"):
        sni_probe(mx, sni)
    r = smtp_session(mx.smtp)
    r.close()


def sni_probe(mx, sni):
    ctx = tls_client_context()
    raw = socket.create_connection(("127.0.0.1", mx.smtps), timeout=20)
    try:
        s = ctx.wrap_socket(raw, server_hostname=sni)
    except (ValueError, UnicodeError):
        raw.close()
        return  # the client library refuses to send this name
    except ssl.SSLError:
        raw.close()
        return  # refused by the server: fine
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    s.sendall(b"EHLO c\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    s.sendall(b"QUIT\r\n")
    s.close()


# ---------------------------------------------------------------- 8. AUTH state machine


def submission(inst):
    return smtp_session(inst.submission, tls=True)


def test_smtpd_auth_state_machine(mx):
    """CVE-2011-1720 (abort and switch mechanism), Dovecot 2019/2020 (aborted
    AUTH), Exim 2023 (AUTH overflows): every path answers, none logs in."""
    mx.conf(smtpd_hard_error_limit="5000", smtpd_soft_error_limit="5000")
    mx.reload()
    time.sleep(0.5)
    pw = demo_password(mx)
    # Before TLS on submission: refused.
    r = Raw(mx.submission)
    r.reply()
    r.cmd("EHLO c")
    assert r.cmd(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + pw)}")[0] == 538
    r.close()

    r = submission(mx)
    # Abort and switch, many times over.
    for i in range(300):
        assert r.cmd("AUTH LOGIN")[0] == 334
        assert r.cmd("*")[0] == 501
        assert r.cmd("AUTH PLAIN")[0] == 334
        assert r.cmd("*")[0] == 501
    assert r.cmd("AUTH CRAM-MD5")[0] in (504, 535)
    assert r.cmd("AUTH DIGEST-MD5")[0] in (504, 535)
    # Garbage.
    assert r.cmd("AUTH PLAIN =")[0] in (501, 535)
    assert r.cmd("AUTH PLAIN not*base64")[0] == 501
    assert r.cmd("AUTH PLAIN AGRl bW8=")[0] == 501
    assert r.cmd("AUTH PLAIN " + b64(DEMO + chr(0) + DEMO + chr(0) + pw + "x"))[0] in (501, 535)
    assert r.cmd("AUTH PLAIN " + b64(chr(0) + DEMO + chr(0)))[0] in (501, 535)  # empty password
    assert r.cmd("AUTH PLAIN " + b64(chr(0) + chr(0) + pw))[0] in (501, 535)  # empty user
    assert r.cmd("AUTH PLAIN " + b64(chr(0) + "\xff\xfe@example.test" + chr(0) + "x"))[0] in (501, 535)
    r.send("AUTH PLAIN " + "A" * 20480 + "\r\n")
    assert r.reply()[0] in (500, 501)
    assert r.cmd("AUTH LOGIN")[0] == 334
    r.send(b"B" * 20480 + b"\r\n")
    # An over-long response ends the session (sasl.h: SASL_READ_TOOLONG), after a reply.
    assert r.reply()[0] in (500, 501, 535)
    assert r.closed()
    r.close()
    r = submission(mx)
    # The real thing still works, once.
    assert r.cmd(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + pw)}")[0] == 235
    assert r.cmd(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + pw)}")[0] == 503
    assert r.cmd(f"MAIL FROM:<{DEMO}>")[0] == 250
    r.close()

    # Disconnect in the middle of an exchange, many times: nothing hangs or crashes.
    for _ in range(20):
        r = submission(mx)
        r.send("AUTH LOGIN\r\n")
        r.reply()
        r.send(b64(DEMO) + "\r\n")
        r.close()
    r = submission(mx)
    assert r.cmd(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + pw)}")[0] == 235
    r.close()


def test_smtpd_auth_during_transaction(mx):
    """AUTH after MAIL is refused (RFC 4954 4: not during a transaction)."""
    pw = demo_password(mx)
    r = Raw(mx.smtps, tls=True)
    r.reply()
    r.cmd("EHLO c")
    r.cmd(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + pw)}")
    r.close()
    r = Raw(mx.smtp)
    r.reply()
    r.cmd("EHLO c")
    assert r.cmd("MAIL FROM:<a@example.org>")[0] == 250
    code, _ = r.cmd(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + pw)}")
    assert code in (502, 503)  # no AUTH on port 25 at all, and never in a transaction
    r.close()
    r = Raw(mx.smtps, tls=True)
    r.reply()
    r.cmd("EHLO c")
    # submission refuses MAIL before AUTH; with AUTH done, a second AUTH inside the transaction is 503.
    assert r.cmd(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + pw)}")[0] == 235
    assert r.cmd(f"MAIL FROM:<{DEMO}>")[0] == 250
    assert r.cmd(f"AUTH PLAIN {b64(chr(0) + DEMO + chr(0) + pw)}")[0] == 503
    r.close()


class Pop(Raw):
    """Raw POP3, one line at a time."""

    def __init__(self, port, tls=False):
        super().__init__(port, tls=tls)
        self.greeting = self.line()

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def multi(self):
        lines = []
        while True:
            ln = self.line()
            if ln == ".":
                return lines
            lines.append(ln)


def test_pop3d_auth_state_machine(mx):
    """CVE-2011-1720, CVE-2019-11494/11499, CVE-2019-10691 (invalid UTF-8
    user), CVE-1999-0006 (huge PASS), CVE-2000-0442 (format strings) on
    pop3d; every path answers and none logs in."""
    mx.conf(pop3d_error_limit="1000")
    mx.reload()
    time.sleep(0.5)
    pw = demo_password(mx)
    r = Pop(mx.pop3s, tls=True)
    assert "APOP" not in r.greeting and "<" not in r.greeting  # no APOP timestamp offered
    for _ in range(100):
        assert r.cmd("AUTH PLAIN").startswith("+")
        assert r.cmd("*").startswith("-ERR")
    for bad in ("AUTH PLAIN =", "AUTH PLAIN not*base64", "AUTH PLAIN AGRl bW8=",
                "AUTH PLAIN " + b64(chr(0) + DEMO + chr(0)), "AUTH PLAIN " + b64(chr(0) + "\xff\xfe" + chr(0) + "x"),
                "AUTH CRAM-MD5", "AUTH NTLM TlRMTVNTUAABAAAA", "PASS %s%s%s",
                "APOP demo 0123456789abcdef0123456789abcdef", "RETR 1", "DELE 1", "TOP 1 -1", "UIDL %s", "STAT"):
        assert r.cmd(bad).startswith("-ERR"), bad
    for user in (b"USER %n%n%s", b"USER \xff\xfe", b"USER " + b"u" * 5000):
        r.send(user + b"\r\n")
        r.line()  # +OK (names are not checked before PASS) or -ERR; never a crash
        assert r.cmd("PASS %s%s%s").startswith("-ERR")
    r.send(b"PASS " + b"x" * (100 * 1024) + b"\r\n")
    assert r.line().startswith("-ERR")
    r.send(b"AUTH PLAIN " + b"A" * 20480 + b"\r\n")
    assert r.line().startswith("-ERR")
    assert r.cmd("").startswith("-ERR")
    assert r.cmd("AUTH PLAIN " + b64(chr(0) + DEMO + chr(0) + pw)).startswith("+OK")
    assert r.cmd("AUTH PLAIN " + b64(chr(0) + DEMO + chr(0) + pw)).startswith("-ERR")
    assert r.cmd(f"USER {DEMO}").startswith("-ERR")
    r.cmd("QUIT")
    # A disconnect in the middle of AUTH, many times.
    for _ in range(20):
        r = Pop(mx.pop3s, tls=True)
        r.send("AUTH PLAIN\r\n")
        r.line()
        r.close()
    r = Pop(mx.pop3s, tls=True)
    assert r.cmd("AUTH PLAIN " + b64(chr(0) + DEMO + chr(0) + pw)).startswith("+OK")
    r.cmd("QUIT")


def test_pop3_state_fuzz(mx):
    """The "next to write" POP3 cases: an empty line in every state (Dovecot
    2.3.19.1), TOP with a negative count, RETR before login, DELE twice."""
    md = mx.dir / "mail" / "example.test" / "demo"
    code, text = send_raw(mx.smtp, "a@example.org", [DEMO], b"Subject: one\n\nbody\n")
    assert code == 250
    # Deliver by hand (no qmgr here): a Maildir file as local names it.
    for d in (md.parent, md, md / "new", md / "cur", md / "tmp"):
        d.mkdir(mode=0o700, exist_ok=True)
    content = b"Subject: one\n\n.dot\nbody\n"
    wire = len(content.replace(b"\n", b"\r\n"))
    name = f"{int(time.time())}.M1P1Q1.host,S={len(content)},W={wire}"
    (md / "new" / name).write_bytes(content)
    if ROOT:
        text = (mx.dir / "main.cf").read_text()
        uid = int(re.search(r"^virtual_uid_maps = static:(\d+)", text, re.M).group(1))
        gid = int(re.search(r"^virtual_gid_maps = static:(\d+)", text, re.M).group(1))
        for p in [mx.dir / "mail" / "example.test", md, md / "new", md / "cur", md / "tmp", md / "new" / name]:
            os.chown(p, uid, gid)
    pw = demo_password(mx)
    r = Pop(mx.pop3s, tls=True)
    assert r.cmd("").startswith("-ERR")
    assert r.cmd("RETR 1").startswith("-ERR")
    assert r.cmd(f"USER {DEMO}").startswith("+OK")
    assert r.cmd("").startswith("-ERR")
    assert r.cmd(f"PASS {pw}").startswith("+OK")
    assert r.cmd("").startswith("-ERR")
    assert r.cmd("TOP 1 -1").startswith("-ERR")
    assert r.cmd("TOP 1 4294967296").startswith("-ERR")
    assert r.cmd("RETR 0").startswith("-ERR")
    assert r.cmd("RETR 18446744073709551617").startswith("-ERR")
    assert r.cmd("UIDL %s%n").startswith("-ERR")
    assert r.cmd("RETR 1").startswith("+OK")
    assert r.multi() == ["Subject: one", "", "..dot", "body"]
    assert r.cmd("DELE 1").startswith("+OK")
    assert r.cmd("DELE 1").startswith("-ERR")
    assert r.cmd("RETR 1").startswith("-ERR")
    assert r.cmd("QUIT").startswith("+OK")
    assert os.listdir(md / "new") == [] and os.listdir(md / "cur") == []


# ---------------------------------------------------------------- 9. local delivery file safety


def test_file_safety_cases_exist():
    """CVE-2008-2936 and friends are replayed by test_local.py; make sure they stay."""
    text = (pathlib.Path(__file__).parent / "test_local.py").read_text()
    for name in ("test_unsafe_mailboxes_are_deferred", "test_unsafe_maildir_is_deferred", "test_dotforward",
                 "test_include_files", "test_virtual_uid_zero_is_deferred", "test_commands_not_allowed"):
        assert f"def {name}(" in text, name


# ---------------------------------------------------------------- 10. spawned-process hygiene


HOSTILE_ENV = {"LD_PRELOAD": "/nonexistent/evil.so", "LD_LIBRARY_PATH": "/tmp/evil", "BASH_ENV": "/tmp/evil.sh",
               "ENV": "/tmp/evil.sh", "IFS": "/", "PERL5LIB": "/tmp/evil", "PYTHONPATH": "/tmp/evil",
               "BASH_FUNC_x%%": "() { touch /tmp/evil; }", "TMPDIR": "/tmp/evil", "TZ": "../../../tmp/evil"}


def test_pipe_children_get_a_clean_slate(live):
    """CVE-2008-3889, CVE-2014-3956, Exim 28012: a pipe command has only
    fds 0, 1 and 2, runs as the recipient's (unprivileged) identity with no
    supplementary groups and no capabilities, and sees none of the
    environment the master was started with."""
    set_aliases(live, "probe: \"|/bin/sh -c 'ls -l /proc/self/fd > OUT/fd; cat /proc/self/status > OUT/status; "
                      "env > OUT/env'\"\n")
    env = dict(os.environ)
    env.update(HOSTILE_ENV)
    proc = subprocess.run([live.postern, "-c", str(live.dir), "start"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    live.started = True
    code, text = send_raw(live.smtp, "a@example.org", ["probe@localhost"], b"Subject: probe\n\nx\n")
    assert code == 250, text
    wait_for(lambda: (live.out / "env").exists() and (live.out / "status").exists(), 60, what="the probe")
    time.sleep(0.5)
    fds = sorted(int(m) for m in re.findall(r" (\d+) -> ", (live.out / "fd").read_text()))
    assert fds[:3] == [0, 1, 2] and len(fds) <= 4, (live.out / "fd").read_text()  # ls's own directory fd
    seen = (live.out / "env").read_text()
    for k in HOSTILE_ENV:
        assert not re.search(rf"^{re.escape(k)}=", seen, re.M), (k, seen)
    status = dict(line.split(":", 1) for line in (live.out / "status").read_text().splitlines() if ":" in line)
    uids = status["Uid"].split()
    if ROOT:
        assert "0" not in uids, status["Uid"]
        assert status["Groups"].split() in ([], [status["Gid"].split()[0]]), status["Groups"]
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status["CapEff"]


# ---------------------------------------------------------------- 11. Berkeley DB and DB_CONFIG

HOSTILE_DB_CONFIG = "set_data_dir /nonexistent/evil\nset_lg_dir /nonexistent/evil\nset_cachesize 0 1 1\nbogus line\n"


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_db_config_is_never_read(live, tmp_path):
    """CVE-2017-10140: Berkeley DB reads DB_CONFIG from the current
    directory.  With a hostile DB_CONFIG in the configuration directory,
    the queue directory and the caller's directory, postern map, the
    sendmail front (newaliases, submission) and every daemon that opens a
    table work as usual and never touch a file of that name."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for d in (live.dir, live.dir / "queue", cwd):
        (d / "DB_CONFIG").write_text(HOSTILE_DB_CONFIG)
    trace = tmp_path / "trace"
    # Tables built and queried from the hostile directory.
    (cwd / "map.txt").write_text("key value\n")
    strace = ["strace", "-f", "-qq", "-e", "trace=%file", "-o", str(trace)]
    proc = subprocess.run(strace + [live.postern, "-c", str(live.dir), "map", f"hash:{cwd}/map.txt"], cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(strace[:-1] + [str(trace) + ".q", live.postern, "-c", str(live.dir), "map", "-q", "key",
                                         f"hash:{cwd}/map.txt"], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "value", proc.stderr
    sendmail = live.build / "cli" / "sendmail"
    if sendmail.exists():
        subprocess.run(strace[:-1] + [str(trace) + ".bi", str(sendmail), "-C", str(live.dir), "-bi"], cwd=cwd,
                       capture_output=True, timeout=60)
    # The daemons: trace the master and everything it starts while mail and AUTH go through.
    live.start()
    tracer = subprocess.Popen(strace[:-1] + [str(trace) + ".master", "-p", str(live.master_pid())],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        live.reload()  # fresh daemons, opening their tables under the tracer
        time.sleep(1.0)
        code, text = send_raw(live.smtp, "a@example.org", [DEMO, "postmaster@localhost"], b"Subject: db\n\nx\n")
        assert code == 250, text
        with smtplib.SMTP("127.0.0.1", live.submission, timeout=30) as s:
            s.starttls(context=tls_client_context())
            s.login(DEMO, demo_password(live))
        if sendmail.exists():
            subprocess.run([str(sendmail), "-C", str(live.dir), DEMO], input=b"Subject: sendmail\n\nx\n", cwd=cwd,
                           capture_output=True, timeout=60)
        wait_for(lambda: queue(live) == [], 60, interval=0.5, what="an empty queue")
    finally:
        tracer.terminate()
        tracer.wait(10)
    # The tracer saw the daemons open their tables (so it would have seen DB_CONFIG too).
    traced = (tmp_path / "trace.master").read_text(errors="replace")
    assert "vmailbox.db" in traced and "passwd.db" in traced, traced[-2000:]
    for f in tmp_path.glob("trace*"):
        text = f.read_text(errors="replace")
        assert "DB_CONFIG" not in text, (f.name, [ln for ln in text.splitlines() if "DB_CONFIG" in ln][:5])
    assert "hash:" not in "".join(re.findall(r"warning: .*DB_CONFIG.*", live.log()))


# ---------------------------------------------------------------- 12. local entry points and sockets


def socket_paths(inst):
    out = []
    for sub in ("private", "public"):
        d = inst.dir / "queue" / sub
        for name in sorted(os.listdir(d)):
            if stat_is_socket(d / name):
                out.append(d / name)
    return out


def stat_is_socket(p):
    import stat as st

    try:
        return st.S_ISSOCK(os.stat(p).st_mode)
    except OSError:
        return False


def garbage(rng, kind):
    if kind == "random":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
    if kind == "big-value":
        return b"name\0" + b"v" * (2 * 1024 * 1024)
    if kind == "many-attrs":
        return b"a\0b\0" * 200000 + b"\0"
    if kind == "half":
        return b"request\0deliv"
    if kind == "bad-name":
        return b"N@ME\0x\0\0"
    if kind == "frames":
        return b"sender\0a@b\0rcpt\0c@d\0\0" + b"99999999999\n"
    return b"\0" * 10


def test_garbage_to_every_local_socket(live):
    """CVE-2025-62875 (OpenSMTPD) and friends: random bytes, oversized and
    half lists and bad frames to every socket in private/ and public/.
    Each bad client is dropped, every service still answers a proper
    client afterwards, and neither the master nor any daemon crashes."""
    live.start()
    master = live.master_pid()
    rng = random.Random(10)
    paths = socket_paths(live)
    assert any(p.name == "cleanup" for p in paths), paths
    for kind in ("random", "big-value", "many-attrs", "half", "bad-name", "frames", "random", "zeros"):
        # Every socket at once; each bad client gets a few seconds to be dropped.
        conns = []
        for path in paths:
            try:
                c = ipcwire.Conn(path, timeout=5)
            except OSError:
                continue
            conns.append(c)
            try:
                c.sock.settimeout(5)
                c.send(garbage(rng, kind))
                if kind != "half":
                    c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        open_ = [c for c in conns]
        while open_ and time.monotonic() < deadline:
            ready, _, _ = select.select([c.sock for c in open_], [], [], max(0.0, deadline - time.monotonic()))
            for c in [c for c in open_ if c.sock in ready]:
                try:
                    if not c.sock.recv(65536):
                        open_.remove(c)
                except OSError:
                    open_.remove(c)
        for c in conns:
            c.close()
    assert pid_alive(master)
    # Every service still greets (or, for triggers, takes) a proper client.
    time.sleep(1)
    for path in paths:
        c = ipcwire.Conn(path, timeout=10)
        try:
            if path.name in ("qmgr", "pickup") or path.parent.name == "public":
                c.send(b"W")
            else:
                hello = c.read_list()
                assert hello and dict(hello).get("protocol"), (path.name, hello)
        finally:
            c.close()
    code, text = send_raw(live.smtp, "a@example.org", [DEMO], b"Subject: after garbage\n\nx\n")
    assert code == 250, text
    wait_for(lambda: queue(live) == [], 60, interval=0.5, what="delivery after the garbage")
    assert pid_alive(master)
    assert not CRASH.search(live.log()), CRASH.search(live.log())


def test_socket_modes(live):
    """Control sockets are not world-accessible (CVE-2025-62875: a world-writable socket)."""
    live.start()
    import stat as st

    for path in socket_paths(live):
        mode = st.S_IMODE(os.stat(path).st_mode)
        parent = st.S_IMODE(os.stat(path.parent).st_mode)
        # Either the socket or its directory keeps others out.
        assert not (mode & 0o002) or not (parent & 0o001), (path, oct(mode), oct(parent))
    for d in ("private", "public"):
        assert not st.S_IMODE(os.stat(live.dir / "queue" / d).st_mode) & 0o007, d


@pytest.mark.skipif(not ROOT or shutil.which("setpriv") is None, reason="needs root and setpriv to act as nobody")
def test_sendmail_hostile_options_as_a_user(live):
    """Exim CVE-2010-4345 (-C), Sendmail CVE-2001-0653 (-d overflow), Exim
    28013/28016 (-F), newline in -f, and a hostile environment: clean
    errors, no crash, no privilege, no newline in the queue."""
    sendmail = live.build / "cli" / "sendmail"
    if not sendmail.exists():
        pytest.skip("no sendmail")
    live.start()
    evil = live.dir / "evil"
    evil.mkdir()
    (evil / "main.cf").write_text(f"queue_directory = {live.dir}/queue\nmail_owner = root\n")
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    env = {"PATH": "/usr/bin:/bin", "TZ": "../../../../etc/shadow", "TMPDIR": "/nonexistent",
           "LD_PRELOAD": "/nonexistent.so", "MAIL_CONFIG": str(evil)}
    cases = [["-C", str(evil), DEMO], ["-d4294967295", DEMO], ["-d-1", DEMO], ["-F", '"(' * 10000, DEMO],
             ["-f", "a\nb@c.example", DEMO], ["-oQ/tmp", "-bp"], ["-bi"]]
    for args in cases:
        proc = subprocess.run(nobody + [str(sendmail), *args], input=b"Subject: hostile\n\nx\n", env=env,
                              capture_output=True, timeout=60, cwd="/")
        assert proc.returncode >= 0, (args, proc.returncode)  # not killed by a signal
        assert proc.returncode != 0 or args[0] not in ("-C",), (args, proc.stderr)
    assert not (evil / "maildrop").exists()
    time.sleep(2)
    for m in queue(live):
        assert "\n" not in m["sender"], m
    for dirpath, _, files in os.walk(live.dir / "queue" / "maildrop"):
        for f in files:
            for t, p in records(os.path.join(dirpath, f)):
                if t == "S":
                    assert b"\n" not in p


# ---------------------------------------------------------------- open relay


RELAY_FORMS = ["user%evil.example@example.test", "evil.example!user@example.test",
               '"user@evil.example"@example.test', "@example.test:user@evil.example", "user@evil.example",
               "user%evil.example@localhost", "evil.example!user@localhost", '"user@evil.example"@localhost',
               "@localhost,@example.test:user@evil.example", "user@[192.0.2.1]", "user@[IPv6:2001:db8::1]",
               "user%evil.example@[127.0.0.1]", "user@[tag:x@evil.example]", "user@evil.example.",
               "user@EVIL.example", "demo%evil.example@example.test"]


def test_classic_open_relay_forms_are_refused(mx):
    """The classic relay test suite, from a client outside mynetworks: no
    form is accepted for a destination that is not ours."""
    mx.conf(mynetworks="192.0.2.0/24")
    mx.reload()
    time.sleep(0.5)
    r = smtp_session(mx.smtp)
    assert r.cmd("MAIL FROM:<spammer@evil.example>")[0] == 250
    for rcpt in RELAY_FORMS:
        code, lines = r.cmd(f"RCPT TO:<{rcpt}>")
        assert code >= 400, (rcpt, lines)
    assert r.cmd(f"RCPT TO:<{DEMO}>")[0] == 250
    r.close()
    assert queue(mx) == []


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is not installed")
def test_nmap_smtp_open_relay(mx, tmp_path):
    """nmap --script smtp-open-relay from outside mynetworks.  The script
    runs on ports nmap knows as SMTP: a copy of its services file names
    the instance's port so, without a slow version scan."""
    mx.conf(mynetworks="192.0.2.0/24")
    mx.reload()
    time.sleep(0.5)
    services = pathlib.Path("/usr/share/nmap/nmap-services")
    (tmp_path / "nmap-services").write_text(f"smtp\t{mx.smtp}/tcp\t0.9\n" +
                                            (services.read_text() if services.exists() else ""))
    proc = subprocess.run(["nmap", "-Pn", "-n", "-sT", "--datadir", str(tmp_path), "-p", str(mx.smtp),
                           "--script", "smtp-open-relay",
                           "--script-args", "smtp-open-relay.domain=example.test,smtp-open-relay.ip=127.0.0.1",
                           "127.0.0.1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "smtp-open-relay" in proc.stdout, proc.stdout
    assert "doesn't seem to be an open relay" in proc.stdout, proc.stdout
    assert "Server is an open relay" not in proc.stdout
    assert queue(mx) == []

"""The smtp client: mail for other domains leaves through real peers.

Peers: badsmtp.py (a scripted server that records bytes and misbehaves
on request), Postfix's smtp-sink, a throwaway Postfix instance, and
dnsmasq on a loopback port for MX/A/AAAA/null MX/NXDOMAIN/SERVFAIL.
Everything listens on loopback, on free ports; every process started
here is stopped by its pid.
"""
import email
import email.policy
import os
import pathlib
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

from badsmtp import DROP, HANG, BadSMTP
from instance import free_ports, pid_alive, run, wait_for
from mail import demo_password, queue, tls_client_context

DEMO = "demo@example.test"
PARAMS = dict(
    smtpd_error_sleep_time="0",
    queue_run_delay="1s",
    minimal_backoff_time="3600s",
    maximal_backoff_time="7200s",
    smtp_helo_name="client.postern.test",
    smtp_connect_timeout="5s",
)


# ---------------------------------------------------------------- helpers

def wait_log(inst, pattern, timeout=30):
    try:
        return wait_for(lambda: re.search(pattern, inst.log()), timeout, interval=0.1, what=f"log line {pattern}")
    except AssertionError as e:
        tail = [ln for ln in inst.log().splitlines() if "/smtpd[" not in ln and "/cleanup[" not in ln][-15:]
        raise AssertionError(str(e) + "\n" + "\n".join(tail)) from None


def start(inst, **params):
    inst.conf(**{**PARAMS, **params})
    inst.smtp = inst.ports[0]
    inst.submission = inst.ports[1]
    inst.start()
    return inst


def send(inst, rcpts, data, sender="alice@example.org", mail_options=(), rcpt_options=()):
    """One message on port 25 (127.0.0.1 is in mynetworks, so it may relay); its queue ID."""
    if isinstance(data, str):
        data = data.encode()
    with smtplib.SMTP("127.0.0.1", inst.smtp, timeout=60) as s:
        s.ehlo("client.example")
        code, resp = s.mail(sender, list(mail_options))
        assert code == 250, resp
        for r in rcpts:
            code, resp = s.rcpt(r, list(rcpt_options))
            assert code == 250, (r, resp)
        code, resp = s.data(data)
        assert code == 250, resp
    return re.search(rb"queued as ([0-9A-V]{16})", resp).group(1).decode()


def demo_mail(inst):
    d = inst.dir / "mail" / "example.test" / "demo" / "new"
    return sorted(d.iterdir()) if d.exists() else []


def wait_bounce(inst, n=1, timeout=30):
    return wait_for(lambda: len(demo_mail(inst)) >= n and demo_mail(inst), timeout, what="a notice for demo")


@pytest.fixture
def bad():
    servers = []

    def make(**kw):
        srv = BadSMTP(**kw).start()
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        s.stop()


def relay_to(srv):
    return f"[127.0.0.1]:{srv.port}"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki():
    """A test CA and a server certificate for mx.remote.test and 127.0.0.1, made with openssl."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="smtp-pki-", dir="/tmp"))
    os.chmod(d, 0o755)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=Postern Test CA", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "srv.key",
            "-out", "srv.csr", "-subj", "/CN=mx.remote.test", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:mx.remote.test,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    for f in d.iterdir():
        os.chmod(f, 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def server_tls(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "srv.pem", pki / "srv.key")
    return ctx


# ---------------------------------------------------------------- a DNS server on loopback

def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Dnsmasq:
    def __init__(self, base, records):
        if shutil.which("dnsmasq") is None:
            pytest.skip("dnsmasq is not installed (tools/deps installs dnsmasq-base)")
        self.port = free_udp_port()
        dead = free_udp_port()
        conf = pathlib.Path(base) / "dnsmasq.conf"
        conf.write_text("\n".join([
            f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv", "no-hosts",
            "local=/test/",  # anything under .test that is not below: NXDOMAIN
            f"server=/fail.test/127.0.0.1#{dead}",  # nobody answers there: a server failure
            *records, ""]))
        os.chmod(conf, 0o644)
        self.proc = subprocess.Popen(
            ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--pid-file=",
             "--user=nobody" if os.geteuid() == 0 else f"--user={pwd.getpwuid(os.geteuid()).pw_name}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self.ready, 10, what="dnsmasq")

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("dnsmasq exited: " + self.proc.stderr.read().decode(errors="replace"))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.3)
        try:
            # a query for "." type SOA; any answer will do
            s.sendto(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x06\x00\x01", ("127.0.0.1", self.port))
            s.recvfrom(512)
            return True
        except OSError:
            return False
        finally:
            s.close()

    @property
    def spec(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def dns(inst):
    made = []

    def make(records):
        d = Dnsmasq(inst.dir, records)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


# ---------------------------------------------------------------- smtp-sink

@pytest.fixture
def sink(inst):
    if shutil.which("smtp-sink") is None:
        pytest.skip("smtp-sink (Debian's postfix package) is not installed")
    d = inst.dir / "sink"
    d.mkdir()
    os.chmod(d, 0o777)
    port = free_ports(1)[0]
    args = ["smtp-sink", "-d", f"{d}/%M.", "-h", "sink.test"]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    proc = subprocess.Popen(args + [f"127.0.0.1:{port}", "10"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _connectable(port), 10, what="smtp-sink")
    yield port, d
    proc.terminate()
    proc.wait(10)


def _connectable(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def test_sink_receives_the_exact_message(inst, sink):
    port, d = sink
    start(inst, relayhost=f"[127.0.0.1]:{port}")
    body = (b"From: alice@example.org\r\nTo: bob@remote.test\r\nSubject: exact\r\n\r\n"
            b"line one\r\n.starts with a dot\r\n..two dots\r\n\r\n \ttabs and spaces \r\nlast\r\n")
    qid = send(inst, ["bob@remote.test"], body)
    wait_log(inst, rf"{qid}: to=<bob@remote\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{port}, .*dsn=2\.0\.0, "
                   r"status=sent \(250 ")
    files = wait_for(lambda: list(d.iterdir()), 10, what="the dump")
    dump = files[0].read_bytes()
    # smtp-sink writes its own headers, then the message with LF line ends, then an empty line.
    i = dump.index(b"Received: from client.example")
    assert dump[i:].split(b"\n", 3)[3] == body.replace(b"\r\n", b"\n") + b"\n"


# ---------------------------------------------------------------- the wire, byte for byte

def test_wire_bytes_crlf_dot_stuffing_and_long_lines(inst, bad):
    srv = bad()
    start(inst, relayhost=relay_to(srv), smtp_line_length_limit="200")
    long_line = b"x" * 450
    r = socket.create_connection(("127.0.0.1", inst.ports[0]), timeout=30)
    f = r.makefile("rwb")

    def cmd(line):
        f.write(line + b"\r\n")
        f.flush()
        while True:
            rep = f.readline()
            if rep[3:4] != b"-":
                return rep

    f.readline()
    cmd(b"EHLO c")
    cmd(b"MAIL FROM:<alice@example.org>")
    cmd(b"RCPT TO:<bob@remote.test>")
    assert cmd(b"DATA").startswith(b"354")
    # a bare CR inside a line is stored as received; "..x" is ".x" stored
    f.write(b"Subject: wire\r\n\r\na\rb\r\n..x\r\n" + long_line + b"\r\n.\r\n")
    f.flush()
    assert f.readline().startswith(b"250")
    cmd(b"QUIT")
    r.close()
    [m] = srv.wait_messages(1)
    raw = m.raw
    assert b"\r\na\r\nb\r\n..x\r\n" in raw
    assert raw.endswith(b"\r\n.\r\n")
    # no bare CR or LF anywhere, no line over the limit
    assert raw.replace(b"\r\n", b"").count(b"\r") == 0 and raw.replace(b"\r\n", b"").count(b"\n") == 0
    assert max(len(x) for x in raw.split(b"\r\n")) <= 200
    assert b"\r\n " + b"x" * 199 in raw  # broken with CRLF SPACE


def test_pipelining_size_dsn_passthrough(inst, bad):
    srv = bad()
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["a@remote.test", "b@remote.test"], "Subject: dsn\r\n\r\nhi\r\n",
               mail_options=["RET=HDRS", "ENVID=env+2B1"], rcpt_options=["NOTIFY=SUCCESS,FAILURE",
                                                                         "ORCPT=rfc822;x+2By@remote.test"])
    wait_log(inst, rf"{qid}: to=<b@remote\.test>, .*status=sent")
    m = srv.messages()[0]  # a delivered notice for alice may follow
    assert re.fullmatch(r"FROM:<alice@example\.org> SIZE=\d+ RET=HDRS ENVID=env\+2B1", m.mail), m.mail
    assert m.rcpts == ["TO:<a@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+2By@remote.test",
                       "TO:<b@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+2By@remote.test"]
    s = srv.sessions[0]
    assert s.pipelined >= 2  # the RCPTs came before the MAIL reply was sent
    assert s.commands[0] == "EHLO client.postern.test"


def test_no_pipelining_no_dsn_means_plain_commands(inst, bad):
    srv = bad(extensions=("8BITMIME",))
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["a@remote.test", "b@remote.test"], "Subject: plain\r\n\r\nhi\r\n",
               mail_options=["RET=FULL"], rcpt_options=["NOTIFY=NEVER"])
    wait_log(inst, rf"{qid}: to=<b@remote\.test>, .*status=sent")
    [m] = srv.messages()
    assert m.mail == "FROM:<alice@example.org>"
    assert m.rcpts == ["TO:<a@remote.test>", "TO:<b@remote.test>"]
    assert srv.sessions[0].pipelined == 0


# ---------------------------------------------------------------- each recipient's fate

def test_per_recipient_replies_and_the_bounce(inst, bad):
    def rcpt(s, arg):
        if "soft" in arg:
            return "450 4.2.1 mailbox busy, try later"
        if "hard" in arg:
            return "550 5.1.1 <hard@remote.test>: Recipient address rejected: no such user"
        return None

    srv = bad(replies={"rcpt": rcpt})
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["ok@remote.test", "soft@remote.test", "hard@remote.test"], "Subject: fates\r\n\r\nhi\r\n",
               sender=DEMO)
    relay = rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{srv.port}"
    wait_log(inst, rf"{qid}: to=<ok@remote\.test>, {relay}, .*dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as BAD")
    wait_log(inst, rf"{qid}: to=<soft@remote\.test>, {relay}, .*dsn=4\.2\.1, status=deferred \(host 127\.0\.0\.1"
                   r"\[127\.0\.0\.1\] said: 450 4\.2\.1 mailbox busy, try later \(in reply to RCPT TO command\)\)")
    wait_log(inst, rf"{qid}: to=<hard@remote\.test>, {relay}, .*dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.1"
                   r"\[127\.0\.0\.1\] said: 550 5\.1\.1 <hard@remote\.test>: Recipient address rejected: no such user "
                   r"\(in reply to RCPT TO command\)\)")
    [m] = srv.messages()
    assert m.rcpts == ["TO:<ok@remote.test>"]
    notice = re.sub(rb"\n[ \t]+", b" ", wait_bounce(inst)[0].read_bytes())  # unfolded
    assert b"Remote-MTA: dns; 127.0.0.1" in notice
    assert b"Diagnostic-Code: smtp; 550 5.1.1 <hard@remote.test>: Recipient address rejected" in notice
    [q] = queue(inst)
    [soft] = [r for r in q["recipients"] if r.get("delay_reason")]
    assert soft["address"] == "soft@remote.test" and "450 4.2.1 mailbox busy" in soft["delay_reason"]


@pytest.mark.parametrize("stage,reply,status,dsn,where", [
    ("mail", "451 4.3.0 try again later", "deferred", r"4\.3\.0", "MAIL FROM command"),
    ("mail", "553 5.7.1 sender rejected", "bounced", r"5\.7\.1", "MAIL FROM command"),
    ("data", "554 5.7.1 no data for you", "bounced", r"5\.7\.1", "DATA command"),
    ("dot", "452 4.3.1 insufficient storage", "deferred", r"4\.3\.1", "end of DATA command"),
    ("dot", "550 5.7.0 content rejected", "bounced", r"5\.7\.0", "end of DATA command"),
])
def test_transaction_replies_apply_to_all(inst, bad, stage, reply, status, dsn, where):
    srv = bad(replies={stage: reply})
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test", "y@remote.test"], "Subject: t\r\n\r\nhi\r\n")
    for who in ("x", "y"):
        wait_log(inst, rf"{qid}: to=<{who}@remote\.test>, .*dsn={dsn}, status={status} \(host .* said: "
                       rf"{re.escape(reply)} \(in reply to {where}\)\)")


@pytest.mark.parametrize("replies,reason", [
    ({"connect": "554 5.7.1 go away"}, r"refused to talk to me: 554 5\.7\.1 go away"),
    ({"ehlo": "421 4.7.0 closing"}, r"said: 421 4\.7\.0 closing \(in reply to EHLO command\)"),
    ({"connect": DROP}, r"lost connection with 127\.0\.0\.1\[127\.0\.0\.1\] while receiving the initial server greeting"),
    ({"mail": DROP}, r"lost connection with .* while sending MAIL FROM"),
])
def test_session_failures_defer(inst, bad, replies, reason):
    srv = bad(replies=replies)
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], "Subject: t\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=deferred \(.*{reason}")
    assert srv.messages() == []


def test_helo_fallback(inst, bad):
    srv = bad(replies={"ehlo": "502 5.5.2 what is EHLO"})
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], "Subject: t\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=sent")
    assert "HELO client.postern.test" in srv.sessions[0].commands


def test_disconnect_mid_data_defers(inst, bad):
    srv = bad(drop_in_data=1000)
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], "Subject: big\r\n\r\n" + ("y" * 70 + "\r\n") * 2000)
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*dsn=4\.4\.2, status=deferred \(lost connection with "
                   r"127\.0\.0\.1\[127\.0\.0\.1\] while sending (message body|end of data)")


def test_slow_and_silent_servers_time_out(inst, bad):
    slow = bad(delay={"mail": 8})
    start(inst, relayhost=relay_to(slow), smtp_mail_timeout="2s", smtp_helo_timeout="2s")
    t0 = time.monotonic()
    qid = send(inst, ["x@remote.test"], "Subject: t\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=deferred \(conversation with 127\.0\.0\.1"
                   r"\[127\.0\.0\.1\] timed out while sending MAIL FROM\)")
    assert time.monotonic() - t0 < 8
    assert slow.messages() == []


def test_reply_without_last_line_and_trickle_time_out(inst, bad):
    def trickle(s, arg):
        return b"250-still talking\r\n"  # and never a last line

    srv = bad(replies={"ehlo": trickle})
    start(inst, relayhost=relay_to(srv), smtp_helo_timeout="2s")
    qid = send(inst, ["x@remote.test"], "Subject: t\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=deferred \(conversation with .* timed out while "
                   r"performing the EHLO handshake\)")


def test_huge_and_hostile_replies(inst, bad):
    huge = "\r\n".join(["250-PIPELINING"] * 100000) + "\r\n250 8BITMIME"
    srv = bad(replies={"ehlo": huge})
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], "Subject: t\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=deferred \(protocol error from 127\.0\.0\.1"
                   r"\[127\.0\.0\.1\] while performing the EHLO handshake: reply has more than 200 lines\)")


def test_nul_and_cr_in_a_reply(inst, bad):
    srv = bad(replies={"rcpt": b"550 5.1.1 bad\x00user\rhere\x1b[31m\r\n"})
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], "Subject: t\r\n\r\nhi\r\n")
    m = wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=bounced \(host .* said: 550 5\.1\.1 bad user here "
                       r"\[31m \(in reply to RCPT TO command\)\)")
    assert "\x00" not in inst.log() and "\x1b" not in inst.log()


# ---------------------------------------------------------------- size, 8-bit, SMTPUTF8

def test_size_limit_bounces_without_sending(inst, bad):
    srv = bad(extensions=("PIPELINING", "SIZE 1000", "8BITMIME"))
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], "Subject: big\r\n\r\n" + "z" * 5000 + "\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*dsn=5\.3\.4, status=bounced \(message size \d+ exceeds size "
                   r"limit 1000 of server 127\.0\.0\.1\[127\.0\.0\.1\]\)")
    assert not any(c.startswith("MAIL") for s in srv.sessions for c in s.commands)


MIME_8BIT = ("MIME-Version: 1.0\r\n"
             "Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n"
             "Content-Type: multipart/mixed; boundary=\"BOUND\"\r\n"
             "\r\n"
             "--BOUND\r\n"
             "Content-Type: text/plain; charset=utf-8\r\n"
             "Content-Transfer-Encoding: 8bit\r\n"
             "\r\n"
             "Grüße aus Köln = ganz nah.  \r\n"
             + "ünïcödé " * 30 + "\r\n"
             "--BOUND\r\n"
             "Content-Type: application/octet-stream\r\n"
             "Content-Transfer-Encoding: 8bit\r\n"
             "\r\n"
             "binärdaten\r\n"
             "--BOUND--\r\n").encode()


def test_8bit_downgrade_for_a_7bit_server(inst, bad):
    srv = bad(extensions=("PIPELINING", "SIZE 10240000"))
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], MIME_8BIT, mail_options=["BODY=8BITMIME"])
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=sent")
    [m] = srv.messages()
    assert "BODY=8BITMIME" not in m.mail
    assert all(b < 0x80 for b in m.raw), "8-bit bytes went to a 7-bit server"
    msg = email.message_from_bytes(m.content, policy=email.policy.default)
    orig = email.message_from_bytes(MIME_8BIT, policy=email.policy.default)
    text, binary = list(msg.iter_parts())
    otext, obinary = list(orig.iter_parts())
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text.get_content() == otext.get_content()
    assert "Grüße aus Köln = ganz nah.  \n" + "ünïcödé " * 30 in text.get_content().replace("\r\n", "\n")
    assert binary["Content-Transfer-Encoding"] == "base64"
    assert binary.get_content() == obinary.get_payload(decode=True) == "binärdaten".encode()


def test_8bit_passes_to_an_8bitmime_server(inst, bad):
    srv = bad()
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], MIME_8BIT, mail_options=["BODY=8BITMIME"])
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=sent")
    [m] = srv.messages()
    assert " BODY=8BITMIME" in m.mail
    assert "Grüße aus Köln".encode() in m.content


def test_8bit_header_to_a_7bit_server_bounces(inst, bad):
    srv = bad(extensions=("PIPELINING",))
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], "Subject: Grüße\r\n\r\nKöln\r\n".encode(), mail_options=["BODY=8BITMIME"])
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*dsn=5\.6\.3, status=bounced \(cannot convert 8-bit content for "
                   r"host 127\.0\.0\.1\[127\.0\.0\.1\], which does not offer 8BITMIME: 8-bit text in a message or "
                   r"MIME header\)")
    assert srv.messages() == []


def test_smtputf8_required_but_not_offered(inst, bad):
    no = bad(extensions=("PIPELINING", "8BITMIME"))
    start(inst, relayhost=relay_to(no))
    qid = send(inst, ["jürgen@remote.test"], "Subject: x\r\n\r\nhi\r\n".encode(),
               sender="alice@example.org", mail_options=["SMTPUTF8"])
    wait_log(inst, rf"{qid}: to=<jürgen@remote\.test>, .*dsn=5\.6\.7, status=bounced \(SMTPUTF8 is required, but was "
                   r"not offered by host 127\.0\.0\.1\[127\.0\.0\.1\]\)")


def test_smtputf8_offered(inst, bad):
    srv = bad()
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["jürgen@remote.test"], "Subject: x\r\n\r\nhi\r\n".encode(), mail_options=["SMTPUTF8"])
    wait_log(inst, rf"{qid}: to=<jürgen@remote\.test>, .*status=sent")
    [m] = srv.messages()
    assert m.mail.endswith(" SMTPUTF8")
    assert m.rcpts == ["TO:<jürgen@remote.test>"]


# ---------------------------------------------------------------- TLS and AUTH

def test_tls_may_is_used_when_offered(inst, bad, pki):
    srv = bad(tls_context=server_tls(pki))
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], "Subject: tls\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=sent")
    assert srv.sessions[0].tls
    assert srv.sessions[0].commands[:3] == ["EHLO client.postern.test", "STARTTLS", "EHLO client.postern.test"]
    wait_log(inst, rf"Untrusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{srv.port}: TLSv1\.[23]")


def test_tls_encrypt_without_starttls_defers(inst, bad):
    srv = bad()
    start(inst, relayhost=relay_to(srv), smtp_tls_security_level="encrypt")
    qid = send(inst, ["x@remote.test"], "Subject: tls\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*dsn=4\.7\.4, status=deferred \(TLS is required, but was not "
                   r"offered by host 127\.0\.0\.1\[127\.0\.0\.1\]\)")
    assert srv.messages() == []


def test_tls_policy_per_destination(inst, bad, pki):
    plain = bad()
    start(inst, relayhost=relay_to(plain), smtp_tls_security_level="encrypt",
          smtp_tls_policy_maps=f"inline:{{ [127.0.0.1]:{plain.port}=may }}")
    qid = send(inst, ["x@remote.test"], "Subject: tls\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=sent")


def test_tls_verify(inst, bad, pki):
    srv = bad(tls_context=server_tls(pki))
    start(inst, relayhost=relay_to(srv), smtp_tls_security_level="verify", smtp_tls_CAfile=str(pki / "ca.pem"))
    qid = send(inst, ["x@remote.test"], "Subject: verify\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=sent")
    wait_log(inst, rf"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{srv.port}")


def test_tls_verify_fails_with_the_wrong_ca(inst, bad, pki):
    srv = bad(tls_context=server_tls(pki))
    start(inst, relayhost=relay_to(srv), smtp_tls_security_level="verify", smtp_tls_CAfile=str(pki / "srv.pem"))
    qid = send(inst, ["x@remote.test"], "Subject: verify\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*dsn=4\.7\.5, status=deferred \(Cannot start TLS with 127\.0\.0\.1"
                   r"\[127\.0\.0\.1\]: TLS handshake failed: server certificate not verified")
    assert srv.messages() == []


def test_starttls_response_injection_is_discarded(inst, bad, pki):
    srv = bad(tls_context=server_tls(pki), inject_after_starttls=b"250-INJECTED\r\n250 AUTH PLAIN\r\n")
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], "Subject: inject\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=sent")
    wait_log(inst, r"discarding \d+ bytes the server sent after its 220 reply to STARTTLS")
    assert srv.sessions[0].tls


def test_broken_tls_with_may_falls_back_to_plaintext(inst, bad, pki):
    srv = bad(tls_context=server_tls(pki), tls_garbage=b"this is not TLS\r\n" * 3)
    start(inst, relayhost=relay_to(srv))
    qid = send(inst, ["x@remote.test"], "Subject: fallback\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=sent")
    assert len(srv.sessions) == 2 and not srv.sessions[1].tls


def test_auth_to_a_smarthost_over_tls(inst, bad, pki):
    srv = bad(tls_context=server_tls(pki), auth={"relayuser": "s3cret:pass"})
    start(inst, relayhost=relay_to(srv), smtp_sasl_auth_enable="yes",
          smtp_sasl_password_maps=f"inline:{{ {relay_to(srv)}=relayuser:s3cret:pass }}")
    qid = send(inst, ["x@remote.test"], "Subject: auth\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=sent")
    s = srv.sessions[0]
    assert s.tls and s.auth == "relayuser"
    assert "s3cret" not in inst.log()


def test_auth_login_and_failure(inst, bad, pki):
    srv = bad(tls_context=server_tls(pki), auth={"u": "right"}, auth_mechs="LOGIN")
    start(inst, relayhost=relay_to(srv), smtp_sasl_auth_enable="yes",
          smtp_sasl_password_maps=f"inline:{{ [127.0.0.1]=u:wrong }}")
    qid = send(inst, ["x@remote.test"], "Subject: auth\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*dsn=4\.7\.8, status=deferred \(SASL authentication failed; "
                   r"server 127\.0\.0\.1\[127\.0\.0\.1\] said: 535 5\.7\.8 Error: authentication failed\)")
    assert srv.messages() == []


def test_no_credentials_without_tls(inst, bad):
    srv = bad(auth={"u": "p"}, auth_needs_tls=False)
    start(inst, relayhost=relay_to(srv), smtp_sasl_auth_enable="yes",
          smtp_sasl_password_maps=f"inline:{{ {relay_to(srv)}=u:p }}")
    qid = send(inst, ["x@remote.test"], "Subject: auth\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*dsn=4\.7\.0, status=deferred \(not sending credentials to host "
                   r"127\.0\.0\.1\[127\.0\.0\.1\] without TLS\)")
    assert not any(c.startswith("AUTH") for c in srv.sessions[0].commands)


# ---------------------------------------------------------------- reuse, retries, politeness

def submit_many(inst, n, rcpt="x@remote.test"):
    qids = []
    with smtplib.SMTP("127.0.0.1", inst.smtp, timeout=60) as s:
        for i in range(n):
            s.sendmail("alice@example.org", [rcpt], f"Subject: m{i}\r\n\r\nmessage {i}\r\n")
    return qids


def test_connection_reuse(inst, bad):
    srv = bad(delay={"dot": 0.3})
    start(inst, relayhost=relay_to(srv), smtp_destination_concurrency_limit="1")
    submit_many(inst, 6)
    srv.wait_messages(6)
    wait_for(lambda: all(s.closed for s in srv.sessions), 20, what="QUIT")
    # one session, RSET between messages, QUIT at the end
    assert len(srv.sessions) <= 2, [len(s.messages) for s in srv.sessions]
    s = srv.sessions[0]
    assert len(s.messages) >= 5
    assert "RSET" in s.commands and s.commands[-1] == "QUIT"


def test_connection_reuse_limit(inst, bad):
    srv = bad(delay={"dot": 0.3})
    start(inst, relayhost=relay_to(srv), smtp_destination_concurrency_limit="1", smtp_connection_reuse_count_limit="2")
    submit_many(inst, 6)
    srv.wait_messages(6)
    assert all(len(s.messages) <= 2 for s in srv.sessions)
    assert len(srv.sessions) >= 3


def test_deferred_then_delivered_after_flush(inst):
    port = free_ports(1)[0]
    start(inst, relayhost=f"[127.0.0.1]:{port}")
    qid = send(inst, ["x@remote.test"], "Subject: later\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@remote\.test>, relay=none, .*dsn=4\.4\.1, status=deferred \(connect to "
                   rf"127\.0\.0\.1\[127\.0\.0\.1\]:{port}: Connection refused\)")
    with BadSMTP(port=port) as srv:
        assert inst.cmd("flush").returncode == 0
        srv.wait_messages(1)
        wait_log(inst, rf"{qid}: to=<x@remote\.test>, .*status=sent")
        wait_for(lambda: queue(inst) == [], 20, what="an empty queue")


def test_dead_destination_is_not_hammered(inst):
    port = free_ports(1)[0]
    start(inst, relayhost=f"[127.0.0.1]:{port}", initial_destination_concurrency="2")
    submit_many(inst, 6)
    wait_log(inst, r"destination \[127\.0\.0\.1\]:\d+ unreachable")
    wait_for(lambda: len(re.findall(r"status=deferred", inst.log())) >= 6, 30, what="6 deferrals")
    log = inst.log()
    assert "delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]" in log
    assert len(re.findall(r"status=deferred \(connect to", log)) < 6


# ---------------------------------------------------------------- DNS

def dns_routes(inst, domains, port):
    """transport_maps: each domain through MX lookup on the given port."""
    return "inline:{ " + ", ".join(f"{d}=smtp:{d}:{port}" for d in domains) + " }"


def test_mx_preference_and_fallback(inst, bad, dns):
    srv = bad(host="127.0.0.3")
    d = dns(["mx-host=pref.test,mx1.pref.test,10", "mx-host=pref.test,mx2.pref.test,20",
             "host-record=mx1.pref.test,127.0.0.2", "host-record=mx2.pref.test,127.0.0.3"])
    start(inst, smtp_dns_resolver=d.spec, transport_maps=dns_routes(inst, ["pref.test"], srv.port))
    qid = send(inst, ["x@pref.test"], "Subject: mx\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@pref\.test>, relay=mx2\.pref\.test\[127\.0\.0\.3\]:{srv.port}, .*status=sent")
    assert re.search(rf"connect to mx1\.pref\.test\[127\.0\.0\.2\]:{srv.port}: Connection refused", inst.log())


def test_implicit_mx_and_ipv6(inst, bad, dns):
    v4 = bad(host="127.0.0.4")
    v6 = bad(host="::1", family=socket.AF_INET6, port=v4.port)
    d = dns(["host-record=plain.test,127.0.0.4", "mx-host=six.test,mx.six.test,5", "host-record=mx.six.test,::1"])
    start(inst, smtp_dns_resolver=d.spec, transport_maps=dns_routes(inst, ["plain.test", "six.test"], v4.port))
    q1 = send(inst, ["x@plain.test"], "Subject: a\r\n\r\nhi\r\n")
    q2 = send(inst, ["x@six.test"], "Subject: aaaa\r\n\r\nhi\r\n")
    wait_log(inst, rf"{q1}: to=<x@plain\.test>, relay=plain\.test\[127\.0\.0\.4\]:{v4.port}, .*status=sent")
    wait_log(inst, rf"{q2}: to=<x@six\.test>, relay=mx\.six\.test\[::1\]:{v4.port}, .*status=sent")
    assert len(v6.messages()) == 1


def test_address_preference(inst, bad, dns):
    v4 = bad(host="127.0.0.1")
    v6 = bad(host="::1", family=socket.AF_INET6, port=v4.port)
    d = dns(["host-record=both.test,127.0.0.1,::1"])
    start(inst, smtp_dns_resolver=d.spec, transport_maps=dns_routes(inst, ["both.test"], v4.port),
          smtp_address_preference="ipv6")
    qid = send(inst, ["x@both.test"], "Subject: pref\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@both\.test>, relay=both\.test\[::1\]:{v4.port}, .*status=sent")
    assert len(v6.messages()) == 1 and v4.messages() == []


@pytest.mark.parametrize("domain,status,dsn,reason", [
    ("nullmx.test", "bounced", r"5\.1\.10", r"Domain nullmx\.test does not accept mail \(nullMX\)"),
    ("nosuch.test", "bounced", r"5\.4\.4", r"Host or domain name not found\. Name service error for name=nosuch\.test "
                                           r"type=MX: Host not found\)"),
    ("x.fail.test", "deferred", r"4\.4\.3", r"Host or domain name not found\. Name service error for "
                                            r"name=x\.fail\.test type=MX: Host not found, try again\)"),
])
def test_dns_failures(inst, dns, domain, status, dsn, reason):
    d = dns(["mx-host=nullmx.test,.,0"])
    start(inst, smtp_dns_resolver=d.spec, transport_maps=dns_routes(inst, [domain], 25))
    qid = send(inst, [f"x@{domain}"], "Subject: dns\r\n\r\nhi\r\n")
    wait_log(inst, rf"{qid}: to=<x@{re.escape(domain)}>, relay=none, .*dsn={dsn}, status={status} \({reason}",
             timeout=60)


# ---------------------------------------------------------------- a real Postfix as the peer

POSTFIX_MASTER = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixPeer:
    """A throwaway Postfix on 127.0.0.1:port that takes mail for remote.test into Maildirs."""

    def __init__(self, base, port, pki=None):
        if shutil.which("postfix") is None or os.geteuid() != 0:
            pytest.skip("a Postfix peer needs Debian's postfix package and root")
        self.base = pathlib.Path(base) / "postfix"
        self.etc = self.base / "etc"
        self.etc.mkdir(parents=True)
        os.chmod(self.base, 0o755)
        self.mail = self.base / "mail"
        self.mail.mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        self.port = port
        (self.etc / "master.cf").write_text(POSTFIX_MASTER.format(port=port))
        (self.etc / "vmailbox").write_text("bob@remote.test bob/\ncarol@remote.test carol/\n")
        main = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.base}/spool",
            f"data_directory = {self.base}/data",
            "mail_owner = postfix", "setgid_group = postdrop",
            "myhostname = mx.remote.test", "mydomain = remote.test", "mydestination =",
            "inet_interfaces = 127.0.0.1", "inet_protocols = ipv4", "mynetworks = 127.0.0.0/8",
            "alias_maps =", "alias_database =", "biff = no",
            "virtual_mailbox_domains = remote.test",
            f"virtual_mailbox_base = {self.mail}",
            f"virtual_mailbox_maps = texthash:{self.etc}/vmailbox",
            f"virtual_uid_maps = static:{nobody.pw_uid}", f"virtual_gid_maps = static:{nobody.pw_gid}",
            f"maillog_file = {self.base}/maillog", f"maillog_file_prefixes = {self.base}",
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            "smtputf8_enable = yes",
        ]
        if pki is not None:
            main += [f"smtpd_tls_cert_file = {pki}/srv.pem", f"smtpd_tls_key_file = {pki}/srv.key",
                     "smtpd_tls_security_level = may", "smtpd_tls_loglevel = 1"]
        (self.etc / "main.cf").write_text("\n".join(main) + "\n")
        (self.base / "spool").mkdir()  # postfix makes what is inside
        # Postfix prints its errors only to a terminal (or syslog): give it one.
        proc = subprocess.run(["script", "-qc", f"postfix -c {self.etc} start", "/dev/null"], capture_output=True,
                              text=True, timeout=60)
        if proc.returncode != 0 or "fatal" in proc.stdout:
            raise AssertionError(f"postfix start: {proc.stdout} {proc.stderr}")
        wait_for(lambda: _connectable(port), 20, what="the Postfix peer")

    def log(self):
        try:
            return (self.base / "maillog").read_text(errors="replace")
        except OSError:
            return ""

    def maildir(self, user):
        d = self.mail / user / "new"
        return sorted(d.iterdir()) if d.exists() else []

    def stop(self):
        subprocess.run(["postfix", "-c", str(self.etc), "stop"], capture_output=True, timeout=60)
        try:
            pid = int((self.base / "spool" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if pid_alive(pid):
            wait_for(lambda: not pid_alive(pid), 15, what="Postfix to stop")


@pytest.fixture
def postfix(inst, pki):
    peers = []

    def make(tls=True):
        p = PostfixPeer(inst.dir.parent, free_ports(1)[0], pki if tls else None)
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.stop()


def test_postfix_peer_byte_exact_and_reuse(inst, postfix):
    pf = postfix(tls=False)
    start(inst, relayhost=f"[127.0.0.1]:{pf.port}", smtp_destination_concurrency_limit="1")
    body = (b"From: alice@example.org\r\nTo: bob@remote.test\r\nSubject: to postfix\r\n\r\n"
            b".leading dot\r\n..two\r\nend\r\n")
    qids = [send(inst, ["bob@remote.test"], body) for _ in range(4)]
    for q in qids:
        wait_log(inst, rf"{q}: to=<bob@remote\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{pf.port}, .*status=sent "
                       r"\(250 2\.0\.0 Ok: queued as ")
    files = wait_for(lambda: len(pf.maildir("bob")) >= 4 and pf.maildir("bob"), 30, what="4 messages at Postfix")
    for f in files:
        data = f.read_bytes()
        assert data.endswith(b"\n.leading dot\n..two\nend\n"), data
        assert b"Subject: to postfix\n" in data
    # fewer connections than messages: several messages went over one session
    log = pf.log()
    connects = len(re.findall(r"postfix/smtpd\[\d+\]: connect from", log))
    assert 1 <= connects < 4, log


def test_done_submission_mx_lookup_tls_to_postfix(inst, postfix, dns, pki):
    """Mail submitted on 587 reaches a real Postfix found through MX lookup on a loopback DNS server, over TLS."""
    pf = postfix(tls=True)
    d = dns(["mx-host=remote.test,mx.remote.test,10", "host-record=mx.remote.test,127.0.0.1"])
    start(inst, smtp_dns_resolver=d.spec, transport_maps=f"inline:{{ remote.test=smtp:remote.test:{pf.port} }}",
          smtp_tls_security_level="verify", smtp_tls_CAfile=str(pki / "ca.pem"))
    with smtplib.SMTP("127.0.0.1", inst.submission, timeout=60) as s:
        s.starttls(context=tls_client_context())
        s.login(DEMO, demo_password(inst))
        s.sendmail(DEMO, ["carol@remote.test"], "From: demo@example.test\r\nTo: carol@remote.test\r\n"
                                                "Subject: done when\r\n\r\nacross the loopback internet\r\n")
    wait_log(inst, rf"to=<carol@remote\.test>, relay=mx\.remote\.test\[127\.0\.0\.1\]:{pf.port}, .*status=sent")
    assert re.search(rf"Verified TLS connection established to mx\.remote\.test\[127\.0\.0\.1\]:{pf.port}: TLSv1\.3",
                     inst.log())
    [f] = wait_for(lambda: pf.maildir("carol"), 30, what="the message at Postfix")
    data = f.read_bytes()
    assert b"Subject: done when\n" in data and data.endswith(b"\n\nacross the loopback internet\n")
    assert re.search(r"postfix/smtpd\[\d+\]: Anonymous TLS connection established from localhost\[127\.0\.0\.1\]",
                     pf.log()) or "TLS connection established from" in pf.log()

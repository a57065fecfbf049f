"""Resource exhaustion: what an abusive client can make a running
instance spend (features.md section 3: Exim CVE-2019-16928, Exim
28017/28020, qmail CVE-2005-1513, Dovecot CVE-2020-12100 and
CVE-2024-23184/23185, Sendmail CVE-2006-0058).

- 1,000 idle connections: smtpd's process limit and the per-client
  connection limit hold (clients beyond them wait or get 421), while the
  master, qmgr and the other services stay responsive;
- slow-drip clients: a command line that trickles in a byte at a time is
  cut off after smtpd_timeout / pop3d_timeout in total, not per byte, so
  the process is reclaimed;
- a 64 KiB EHLO, a 1 MiB line without CRLF, a 10 MB header field,
  100,000 header lines, 100,000 continuation lines, 10,000-deep MIME
  nesting, an oversized streamed body, a million pipelined RCPTs: each
  gets a controlled reply, and the peak resident memory (VmHWM from
  /proc) of the smtpd and cleanup that served it stays bounded.

The figures are printed and appended to $POSTERN_BUILD/reliability-figures.txt
(doc/reliability.md quotes them).  POSTERN_RCPT_N sets the RCPT count
(default 1,000,000).
"""
import os
import re
import resource
import select
import socket
import threading
import time

import pytest

from instance import proc_children, wait_for
from mail import Raw, demo_password, queue, tls_client_context

DEMO = "demo@example.test"
CRASH = re.compile(r"panic:|fatal:|killed by signal|dumped core|AddressSanitizer|runtime error")


def sanitized(inst):
    try:
        return "-fsanitize=address" in (inst.build / "Makefile").read_text()
    except OSError:
        return False


def figure(inst, name, value):
    """Report a measured figure: printed, and kept beside the build for doc/reliability.md."""
    line = f"{name}: {value}{' (ASan+UBSan build)' if sanitized(inst) else ''}"
    print(line)
    try:
        with open(inst.build / "reliability-figures.txt", "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def service_pids(inst, name):
    out = []
    for pid in proc_children(inst.master_pid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(f"{name}: "):
            out.append(pid)
    return out


def vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def peak(inst, name):
    """The largest VmHWM among the service's processes now, in KiB."""
    return max([vm_hwm_kb(p) for p in service_pids(inst, name)] or [0])


def rss_limit(inst, mib):
    """A memory bound in KiB, looser under ASan (shadow memory, quarantine)."""
    return mib * 1024 * (8 if sanitized(inst) else 1)


@pytest.fixture
def mx(inst):
    inst.smtp, inst.submission = inst.ports[0], inst.ports[1]
    inst.conf(smtpd_error_sleep_time="0")
    yield inst
    assert not CRASH.search(inst.log()), CRASH.search(inst.log())


def set_maxproc(inst, port, n):
    cf = inst.dir / "master.cf"
    cf.write_text(re.sub(rf"^(127\.0\.0\.1:{port}\s+inet\s+\S+\s+\S+\s+\S+\s+\S+\s+)\S+", rf"\g<1>{n}",
                         cf.read_text(), flags=re.M))


def session(port, helo="client.example"):
    r = Raw(port, timeout=120)
    assert r.reply()[0] == 220
    assert r.cmd(f"EHLO {helo}")[0] == 250
    return r


def transaction(r, rcpt=DEMO):
    assert r.cmd("MAIL FROM:<sender@example.org>")[0] == 250
    assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert r.cmd("DATA")[0] == 354


# ---------------------------------------------------------------- connections


def test_thousand_idle_connections(mx):
    """1,000 idle connections from one address outside mynetworks: 50 get
    the greeting (smtpd_client_connection_count_limit), the others 421 or
    a wait in the listen queue; never more smtpd processes than maxproc;
    the master, the submission service and qmgr keep working."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) is below 1,200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)) if hard != resource.RLIM_INFINITY
                                                else 4096, hard))
    mx.conf(mynetworks="192.0.2.0/24", smtpd_client_connection_count_limit="50", default_process_limit="100")
    mx.start()
    socks = []
    try:
        for _ in range(1000):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", mx.smtp))
            socks.append(s)
        greeted, refused, data = set(), set(), {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(greeted) + len(refused) < 1000:
            r, _, _ = select.select([s for s in socks if s not in greeted and s not in refused], [], [], 1.0)
            for s in r:
                try:
                    d = s.recv(4096)
                except OSError:
                    d = b""
                data[s] = data.get(s, b"") + d
                if data[s].startswith(b"220"):
                    greeted.add(s)
                elif data[s].startswith(b"421") or not d:
                    refused.add(s)
            # Stop once every process slot is held and the refusals have run their course.
            if len(greeted) >= 50 and len(refused) >= 950:
                break
        nsmtpd = len(service_pids(mx, "smtpd"))
        # The master answers, and a message through another service arrives: qmgr and local work.
        t0 = time.monotonic()
        st = mx.cmd("status", timeout=30)
        took = time.monotonic() - t0
        assert st.returncode == 0, st.stderr
        import smtplib

        with smtplib.SMTP("127.0.0.1", mx.submission, timeout=60) as c:
            c.starttls(context=tls_client_context())
            c.login(DEMO, demo_password(mx))
            c.sendmail(DEMO, [DEMO], "Subject: while busy\r\n\r\nstill here\r\n")
        md = mx.dir / "mail" / "example.test" / "demo" / "new"
        wait_for(lambda: md.exists() and len(os.listdir(md)) == 1, 60, what="delivery while port 25 is full")
        figure(mx, "idle connections", f"1000 opened, {len(greeted)} greeted, {len(refused)} refused with 421, "
                                       f"{1000 - len(greeted) - len(refused)} waiting; {nsmtpd} smtpd processes; "
                                       f"postern status took {took:.2f}s")
        assert len(greeted) == 50, (len(greeted), len(refused))
        assert nsmtpd <= 100
        assert all(data[s].startswith(b"421 4.7.0") for s in refused if data[s]), \
            {data[s][:60] for s in refused}
    finally:
        for s in socks:
            s.close()
    assert "Connection concurrency limit exceeded" in mx.log()


def drip(port, first, every, total, payload=b"EHLO slow.example"):
    """Send first, then one byte of payload every `every` seconds; seconds until the server hung up."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    got = s.recv(4096)
    assert got.startswith(first), got
    i = 0
    try:
        while time.monotonic() - t0 < total:
            s.sendall(payload[i % len(payload):i % len(payload) + 1])
            i += 1
            r, _, _ = select.select([s], [], [], every)
            if r:
                d = s.recv(4096)
                if not d:
                    return time.monotonic() - t0, got
                got += d
    except (BrokenPipeError, ConnectionResetError):
        return time.monotonic() - t0, got
    finally:
        s.close()
    return None, got


def test_slow_drip_clients_are_cut_off(mx):
    """A command that arrives a byte a second never completes within
    smtpd_timeout (3s here): smtpd hangs up and the process serves the
    next client.  The same for pop3d."""
    set_maxproc(mx, mx.smtp, 1)
    mx.conf(smtpd_timeout="3s", pop3d_timeout="3s")
    mx.start()
    took, got = drip(mx.smtp, b"220", 1.0, 30)
    assert took is not None and took < 15, (took, got)
    assert b"421 4.4.2" in got or got.count(b"\n") == 1, got
    # The only smtpd process is free again.
    r = session(mx.smtp)
    r.close()
    took, got = drip(mx.ports[3], b"+OK", 1.0, 30, payload=b"USER slow@example.test")
    assert took is not None and took < 15, (took, got)
    figure(mx, "slow drip", f"cut off after {took:.1f}s with a 3s timeout")


# ---------------------------------------------------------------- lines and headers


def test_long_ehlo_and_line_without_end(mx):
    """CVE-2019-16928: a 64 KiB EHLO argument; a 1 MiB line with no CRLF."""
    mx.start()
    r = Raw(mx.smtp)
    r.reply()
    code, lines = r.cmd("EHLO " + "h" * 65536)
    assert code == 500 and lines[0].startswith("500 5.5.2"), lines
    assert r.cmd("EHLO c")[0] == 250
    r.send(b"NOOP " + b"x" * (1024 * 1024))
    time.sleep(1)
    hwm = peak(mx, "smtpd")
    r.send(b"\r\n")
    code, lines = r.reply()
    assert code == 500, lines
    assert r.cmd("NOOP")[0] == 250
    r.close()
    figure(mx, "smtpd VmHWM after a 1 MiB command line", f"{hwm} KiB")
    assert hwm < rss_limit(mx, 32)


def send_content(mx, chunks, expect):
    """DATA with the given content (an iterable of bytes, CRLF line ends); the reply and the peak RSS."""
    r = session(mx.smtp)
    transaction(r)
    for c in chunks:
        r.send(c)
    r.send(b"\r\n.\r\n")
    code, lines = r.reply()
    hwm = (peak(mx, "smtpd"), peak(mx, "cleanup"))
    r.cmd("QUIT")
    r.close()
    assert code == expect, lines
    return lines, hwm


def test_ten_megabyte_header(mx):
    mx.conf(message_size_limit="52428800")
    mx.start()

    def gen():
        yield b"Subject: big header\r\nX-Big: "
        for _ in range(160):
            yield b"a" * 65536
        yield b"\r\n\r\nbody"

    lines, (s, c) = send_content(mx, gen(), 552)
    assert "5.3.4" in lines[0], lines
    figure(mx, "10 MB header field", f"552 5.3.4; smtpd VmHWM {s} KiB, cleanup VmHWM {c} KiB")
    assert s < rss_limit(mx, 32) and c < rss_limit(mx, 32)
    assert queue(mx) == []


@pytest.mark.parametrize("kind", ["fields", "continuations"])
def test_hundred_thousand_header_lines(mx, kind):
    mx.start()
    line = b"To: someone@example.org\r\n" if kind == "fields" else b"\tcontinued@example.org,\r\n"

    def gen():
        yield b"Subject: many lines\r\nTo: first@example.org,\r\n"
        for _ in range(100):
            yield line * 1000
        yield b"\r\nbody"

    lines, (s, c) = send_content(mx, gen(), 552)
    assert "5.3.4" in lines[0], lines
    figure(mx, f"100,000 header {kind}", f"552 5.3.4; smtpd VmHWM {s} KiB, cleanup VmHWM {c} KiB")
    assert s < rss_limit(mx, 32) and c < rss_limit(mx, 32)


def test_ten_thousand_deep_mime(mx):
    """CVE-2020-12100: MIME nested 10,000 deep is only data to smtpd, cleanup
    and local (none of them parses MIME): queued, delivered byte-exact,
    memory bounded."""
    mx.start()
    depth = 10000
    parts = [b"MIME-Version: 1.0\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"]
    for i in range(1, depth):
        parts.append(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i - 1, i))
    parts.append(b"--b%d\r\nContent-Type: text/plain\r\n\r\n8-bit \xc3\xa9\r\n" % (depth - 1))
    for i in reversed(range(depth)):
        parts.append(b"--b%d--\r\n" % i)
    body = b"".join(parts)
    lines, (s, c) = send_content(mx, [body], 250)
    md = mx.dir / "mail" / "example.test" / "demo" / "new"
    wait_for(lambda: md.exists() and len(os.listdir(md)) == 1, 60, what="delivery")
    data = (md / os.listdir(md)[0]).read_bytes()
    assert data.endswith(body.replace(b"\r\n", b"\n") + b"\n") or data.endswith(body.replace(b"\r\n", b"\n"))
    figure(mx, "10,000-deep MIME", f"250, delivered; smtpd VmHWM {s} KiB, cleanup VmHWM {c} KiB")
    assert s < rss_limit(mx, 32) and c < rss_limit(mx, 32)


def test_oversized_streamed_body(mx):
    """qmail CVE-2005-1513: a body far beyond message_size_limit is read and
    dropped as it streams (552 at the end), in bounded memory."""
    mx.conf(message_size_limit="1048576")
    mx.start()

    def gen():
        yield b"Subject: too big\r\n\r\n"
        block = (b"z" * 998 + b"\r\n") * 64
        for _ in range(320):  # 20 MiB
            yield block

    lines, (s, c) = send_content(mx, gen(), 552)
    figure(mx, "20 MiB body over a 1 MiB limit", f"552; smtpd VmHWM {s} KiB, cleanup VmHWM {c} KiB")
    assert s < rss_limit(mx, 32) and c < rss_limit(mx, 32)
    assert queue(mx) == []


def test_a_million_pipelined_rcpts(mx):
    """Exim 28017 (recipient count overflow): a million RCPT commands in one
    pipelined stream.  smtpd_recipient_limit (1,000) are accepted, then
    each one is an error (452 4.5.3) until smtpd_hard_error_limit (set to
    its maximum, 100,000) ends the session with 421; smtpd's memory does
    not grow with the count, and nothing is queued."""
    n = int(os.environ.get("POSTERN_RCPT_N", "1000000"))
    limit = 100000
    mx.conf(smtpd_hard_error_limit=str(limit), smtpd_soft_error_limit=str(limit), recipient_delimiter="+")
    mx.start()
    r = session(mx.smtp)
    assert r.cmd("MAIL FROM:<sender@example.org>")[0] == 250
    codes = {}
    done = threading.Event()
    hwm = [0]

    def reader():
        try:
            while True:
                ln = r.line()
                codes[ln[:9]] = codes.get(ln[:9], 0) + 1
                if codes[ln[:9]] % 10000 == 0 or ln.startswith("421"):
                    hwm[0] = max(hwm[0], peak(mx, "smtpd"))
        except (EOFError, OSError):
            pass
        done.set()

    t = threading.Thread(target=reader, daemon=True)
    t0 = time.monotonic()
    t.start()
    batch = b"".join(b"RCPT TO:<demo+%d@example.test>\r\n" % i for i in range(1000))
    sent = 0
    try:
        for i in range(n // 1000):
            r.sock.sendall(batch)
            sent += 1000
    except OSError:
        pass  # the server hung up, as it should, with our input unread
    assert done.wait(600), codes
    took = time.monotonic() - t0
    hwm[0] = max(hwm[0], peak(mx, "smtpd"))  # the process stays for the next client, its peak with it
    r.close()
    # Only these replies; how many reach us depends on how much TCP dropped when
    # smtpd closed with our input unread (a reset): smtpd's log has the count.
    assert set(codes) <= {"250 2.1.5", "452 4.5.3", "421 4.7.0"}, codes
    assert codes.get("250 2.1.5", 0) <= 1000
    if n - 1000 >= limit:
        wait_for(lambda: re.search(r"too many errors after RCPT from localhost\[127\.0\.0\.1\]", mx.log()) or
                 re.search(r"too many errors after", mx.log()), 30, what="the error limit in the log")
        m = wait_for(lambda: re.search(r"disconnect from .* rcpt=(\d+)/(\d+)", mx.log()), 30, what="disconnect")
        assert (int(m.group(1)), int(m.group(2))) == (1000, 1000 + limit), m.group(0)
    assert queue(mx) == []
    figure(mx, f"{n} pipelined RCPTs", f"{sent} sent before the hang-up; 1000 accepted, {limit} x 452, "
           f"421 and disconnect after {took:.1f}s; smtpd VmHWM {hwm[0]} KiB")
    assert hwm[0] < rss_limit(mx, 32)
    # A well-behaved client right after.
    r = session(mx.smtp)
    r.close()

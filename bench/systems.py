"""systems.py - the systems under test, each in its own temporary
directory: Postern, Postfix, Dovecot, and smtp-sink as the remote host."""
import argparse
import atexit
import json
import os
import pathlib
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import *  # noqa: F401,F403
from measure import *  # noqa: F401,F403

# --------------------------------------------------------------- smtp-sink


class Sink:
    """smtp-sink on loopback, counting the messages it has received."""

    def __init__(self, port):
        self.port = port
        self.count = 0
        self.last_change = time.time()
        self.proc = subprocess.Popen(
            [SMTP_SINK, "-u", "nobody", "-c", f"127.0.0.1:{port}", "1024"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            buf += chunk
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            for p in reversed(parts):
                m = re.search(rb"mesg=(\d+)", p)
                if m:
                    n = int(m.group(1))
                    if n != self.count:
                        self.count = n
                        self.last_change = time.time()
                    break

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --------------------------------------------------------------- the systems


def make_message(i, size):
    """A 2 KiB-ish message like the ones local delivery stores."""
    head = (f"Return-Path: <{SENDER}>\n"
            f"Delivered-To: {USER}\n"
            f"Received: from localhost (localhost [127.0.0.1])\n"
            f"\tby mail.bench.test with ESMTP id BENCH{i:08d}\n"
            f"\tfor <{USER}>; Mon,  1 Jan 2024 00:00:00 +0000 (UTC)\n"
            f"From: <{SENDER}>\nTo: <{USER}>\n"
            f"Subject: pop3 benchmark message {i}\n"
            f"Message-Id: <{i}.bench@bench.test>\n"
            f"Date: Mon, 1 Jan 2024 00:00:00 +0000\n\n")
    line = "La de da de da 1. La de da de da 2. La de da de da 3. La de da de da 4.\n"
    body = (line * (size // len(line) + 1))[:size]
    if not body.endswith("\n"):
        body = body[:-1] + "\n"
    return (head + body).encode()


def fill_maildir(md, n, uid, gid, size=2048):
    """n messages in md/new, named as deliveries name them (with S= and W=)."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(md / sub, exist_ok=True)
        os.chown(md / sub, uid, gid)
        os.chmod(md / sub, 0o700)
    os.chown(md, uid, gid)
    os.chmod(md, 0o700)
    now = int(time.time())
    for i in range(n):
        data = make_message(i, size)
        wsize = len(data) + data.count(b"\n")
        p = md / "new" / f"{now}.M{i}P1.bench.test,S={len(data)},W={wsize}"
        with open(p, "wb") as f:
            f.write(data)
        os.chown(p, uid, gid)
        os.chmod(p, 0o600)


TRASH = None
TRASH_SEQ = [0]


def retire(path):
    """Move a used Maildir out of the way; it is deleted after the last round.

    Deleting tens of thousands of files right before a round would make
    that round pay for it: ext4 skips recently freed inodes when it
    allocates new ones (and writes back the deletions), so the next round
    would be slower for reasons neither system controls."""
    if path.exists():
        TRASH_SEQ[0] += 1
        os.rename(path, TRASH / f"{TRASH_SEQ[0]}")


def reset_maildir(md):
    """Back to no Maildir at all (the delivery agent makes it), or with
    fill_maildir, to a fresh, never-opened one: no index files."""
    retire(md)


class LogSink:
    """bench/logsink on a socket of its own: one system's syslog."""

    def __init__(self, work, name):
        self.sock = work / f"{name}-log.sock"
        self.file = work / f"{name}.log"
        self.realdev = work / f"{name}-realdev"
        self.realdev.mkdir(exist_ok=True)
        self.proc = subprocess.Popen([work / "bin" / "logsink", self.sock, self.file])
        wait_for(self.sock.exists, 10, "logsink socket")

    def wrap(self, args):
        """args, run in a mount namespace whose /dev/log is this sink."""
        return [HERE / "nsrun", self.sock, self.realdev, *args]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Postern:
    label = "postern"

    def __init__(self, work, build, sink_port, params=()):
        self.work = work
        self.params = list(params)
        self.dir = work / "postern"
        self.build = build
        self.cli = build / "cli" / "postern"
        self.ports = free_ports(5)
        self.smtp_port, self.pop3_port = self.ports[0], self.ports[3]
        self.sink_port = sink_port
        self.has_smtp = (build / "libexec" / "smtp").exists()
        self.password = None

    def setup(self):
        out = run([self.cli, "init", "-p", ",".join(map(str, self.ports)), self.dir]).stdout
        m = re.search(r"password (\S+)", out)
        if not m:
            raise RuntimeError(f"postern init printed no password:\n{out}")
        self.password = m.group(1)
        cf = (self.dir / "main.cf").read_text()
        m = re.search(r"^virtual_uid_maps\s*=\s*static:(\d+)", cf, re.M)
        g = re.search(r"^virtual_gid_maps\s*=\s*static:(\d+)", cf, re.M)
        self.uid, self.gid = int(m.group(1)), int(g.group(1))
        run([self.cli, "-c", self.dir, "conf", "-e", f"relayhost=[127.0.0.1]:{self.sink_port}",
             *self.params])
        # Log through syslog(3), as on a server: bench/logsink stamps the lines.
        cf = (self.dir / "main.cf").read_text()
        (self.dir / "main.cf").write_text(re.sub(r"^maillog_file\s*=.*\n", "", cf, flags=re.M))
        self.logsink = LogSink(self.work, "postern")
        if self.has_smtp:
            mc = self.dir / "master.cf"
            text = mc.read_text()
            if re.search(r"^smtp\s+unix", text, re.M) is None:
                text = re.sub(r"^#(smtp\s+unix.*)$", r"\1", text, flags=re.M)
                if re.search(r"^smtp\s+unix", text, re.M) is None:
                    text += "smtp             unix  -       -       y       -       -       smtp\n"
                mc.write_text(text)

    def start(self):
        start_daemon(self.logsink.wrap([self.cli, "-c", self.dir, "start"]), self.work / "postern-start.out")
        wait_for(self.master_pid, 10, "postern master pid")

    def stop(self):
        if self.master_pid():
            run([self.cli, "-c", self.dir, "stop"], check=False, timeout=60)
        self.logsink.stop()

    def master_pid(self):
        try:
            pid = int((self.dir / "queue" / "pid" / "master.pid").read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def roots(self):
        return [self.master_pid()]

    def maildir(self):
        return self.dir / "mail" / DOMAIN / "demo"

    def logfile(self):
        return self.logsink.file

    def queue_empty(self):
        q = self.dir / "queue"
        return all(tree_files(q / d) == 0 for d in ("incoming", "active", "deferred", "maildrop"))

    def pop3_login(self):
        return USER, self.password


def postfix_master_cf(port):
    """Debian's shipped master.cf, with the MX service on our port and no
    chroot (a chroot needs copies of /etc files in the queue directory; it
    does not change how much work or how many fsyncs a message costs)."""
    out = []
    for line in pathlib.Path("/etc/postfix/master.cf").read_text().splitlines():
        if not line or line.startswith("#") or line[0].isspace():
            out.append(line)
            continue
        f = line.split()
        if len(f) >= 8:
            if f[0] == "smtp" and f[1] == "inet":
                f[0] = f"127.0.0.1:{port}"
            f[4] = "n"
            line = " ".join(f)
        out.append(line)
    return "\n".join(out) + "\n"


class Postfix:
    label = "postfix"

    def __init__(self, work, sink_port, uid, gid, params=()):
        self.work = work
        self.params = list(params)
        self.dir = work / "postfix"
        self.smtp_port = free_ports(1)[0]
        self.sink_port = sink_port
        self.uid, self.gid = uid, gid

    def setup(self):
        d = self.dir
        for sub in ("conf", "queue", "data", "mail"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(d / "data", "postfix", "postfix")
        os.chown(d / "mail", self.uid, self.gid)
        (d / "conf" / "vmailbox").write_text(f"{USER} {DOMAIN}/demo/\n")
        (d / "conf" / "main.cf").write_text(f"""\
# A private Postfix for bench/run: defaults as shipped, except the paths,
# loopback only, a virtual mailbox domain, and relaying to smtp-sink.
# It logs to syslog, as shipped; /dev/log is bench/logsink's socket.
compatibility_level = 3.6
config_directory = {d}/conf
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.bench.test
mydomain = bench.test
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
biff = no
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = hash:{d}/conf/vmailbox
virtual_mailbox_base = {d}/mail
virtual_uid_maps = static:{self.uid}
virtual_gid_maps = static:{self.gid}
relayhost = [127.0.0.1]:{self.sink_port}
""" + "".join(f"{p.split('=', 1)[0].strip()} = {p.split('=', 1)[1].strip()}\n" for p in self.params))
        (d / "conf" / "master.cf").write_text(postfix_master_cf(self.smtp_port))
        run([POSTMAP, f"hash:{d}/conf/vmailbox"], env=self.env())
        self.logsink = LogSink(self.work, "postfix")

    def env(self):
        e = dict(os.environ)
        e["MAIL_CONFIG"] = str(self.dir / "conf")
        return e

    def start(self):
        start_daemon(self.logsink.wrap([POSTFIX, "-c", self.dir / "conf", "start"]),
                     self.work / "postfix-start.out", env=self.env())
        wait_for(self.master_pid, 10, "postfix master pid")

    def stop(self):
        if self.master_pid():
            run([POSTFIX, "-c", self.dir / "conf", "stop"], check=False, env=self.env())
            try:
                wait_for(lambda: self.master_pid() is None, 20, "postfix to stop")
            except RuntimeError:
                pid = self.master_pid()
                if pid:
                    os.kill(pid, signal.SIGKILL)
        self.logsink.stop()

    def master_pid(self):
        try:
            pid = int((self.dir / "queue" / "pid" / "master.pid").read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def roots(self):
        return [self.master_pid()]

    def maildir(self):
        return self.dir / "mail" / DOMAIN / "demo"

    def logfile(self):
        return self.logsink.file

    def queue_empty(self):
        q = self.dir / "queue"
        return all(tree_files(q / d) == 0 for d in ("incoming", "active", "deferred", "maildrop"))


class Dovecot:
    label = "dovecot"

    def __init__(self, work, uid, gid, password):
        self.dir = work / "dovecot"
        self.pop3_port = free_ports(1)[0]
        self.uid, self.gid = uid, gid
        self.password = password

    def setup(self):
        d = self.dir
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d / "run", 0o755)
        os.chown(d / "mail", self.uid, self.gid)
        hashed = run(["openssl", "passwd", "-6", "-stdin"], input=self.password).stdout.strip()
        (d / "users").write_text(
            f"{USER}:{{SHA512-CRYPT}}{hashed}:{self.uid}:{self.gid}::{self.maildir()}\n")
        os.chmod(d / "users", 0o644)
        (d / "dovecot.conf").write_text(f"""\
# A private Dovecot for bench/run: defaults as shipped, except the paths,
# POP3 only, on loopback, without TLS, users from a passwd-file.
instance_name = postern-bench-dovecot
base_dir = {d}/run
state_dir = {d}/state
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = {d}/dovecot.log
mail_location = maildir:{d}/mail/%d/%n
first_valid_uid = 100
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")

    def start(self):
        start_daemon([DOVECOT, "-c", self.dir / "dovecot.conf"], self.dir / "start.out")
        wait_for(self.master_pid, 10, "dovecot master pid")

    def stop(self):
        pid = self.master_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            try:
                wait_for(lambda: self.master_pid() is None, 20, "dovecot to stop")
            except RuntimeError:
                os.kill(pid, signal.SIGKILL)

    def master_pid(self):
        try:
            pid = int((self.dir / "run" / "master.pid").read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def roots(self):
        return [self.master_pid()]

    def maildir(self):
        return self.dir / "mail" / DOMAIN / "demo"

    def pop3_login(self):
        return USER, self.password

#!/usr/bin/python3
"""bench.py - Postern side by side with Postfix 3.7 and Dovecot 2.3.

Run by bench/run (which installs the Debian packages this needs); see
bench/README.md for what is measured and how.  Everything runs on this
machine, on loopback, from one temporary directory: a `postern init`
instance of the build under test, a private Postfix instance (its own
config, queue and data directories, started with `postfix -c`), a private
Dovecot instance (its own config, base and state directories), and
smtp-sink as the remote host for the relay workload.  Every workload runs
alternately against Postern (A) and the Postfix/Dovecot side (B), A B A B
A B, and the report gives each round's figures and the medians' ratio.

Nothing here changes either system's durability: both keep their shipped
fsync behaviour.  The harness needs root (Postfix's master does).
"""
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

HERE = pathlib.Path(__file__).resolve().parent
SRC = HERE.parent
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
POSTFIX = "/usr/sbin/postfix"
POSTMAP = "/usr/sbin/postmap"
DOVECOT = "/usr/sbin/dovecot"
DOMAIN = "example.test"
USER = "demo@example.test"
SENDER = "bench@bench.test"
REMOTE_RCPT = "user@remote.test"
TICK = os.sysconf("SC_CLK_TCK")

# --------------------------------------------------------------- small helpers


def log(msg):
    print(msg, flush=True)


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (bound, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def run(args, check=True, timeout=120, **kw):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc


def start_daemon(args, logfile, **kw):
    """Run a command that leaves a daemon behind: its output goes to a file,
    not a pipe (the daemon would hold a pipe open)."""
    with open(logfile, "ab") as f:
        proc = subprocess.run([str(a) for a in args], stdin=subprocess.DEVNULL, stdout=f,
                              stderr=subprocess.STDOUT, timeout=120, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n"
                           f"{pathlib.Path(logfile).read_text(errors='replace')[-2000:]}")


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(sorted_xs, p):
    if not sorted_xs:
        return None
    k = min(len(sorted_xs) - 1, max(0, int(round(p / 100.0 * (len(sorted_xs) - 1)))))
    return sorted_xs[k]


def count_files(d):
    try:
        with os.scandir(d) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def empty_dir(d):
    """Remove every file in d (not d itself)."""
    try:
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    try:
                        os.unlink(e.path)
                    except FileNotFoundError:
                        pass
    except FileNotFoundError:
        pass


def tree_files(d):
    n = 0
    for _, _, files in os.walk(d):
        n += len(files)
    return n


# --------------------------------------------------------------- /proc accounting


def read_procs():
    """pid -> (ppid, comm, own ticks, reaped children's ticks) for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                s = f.read()
        except OSError:
            continue
        lp, rp = s.index("("), s.rindex(")")
        comm = s[lp + 1:rp]
        f = s[rp + 2:].split()
        out[int(entry)] = (int(f[1]), comm, int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
    return out


def tree_of(procs, roots):
    """The pids of roots and all their descendants."""
    kids = {}
    for pid, (ppid, *_rest) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo = set(), [r for r in roots if r in procs]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(kids.get(p, ()))
    return seen


def cpu_ticks(roots):
    """CPU ticks of a process tree: each member's own utime+stime plus the
    cutime+cstime of the children it has reaped.  A child that exits moves
    its ticks (and those of its own reaped children) into its parent's
    cutime/cstime when the parent reaps it, so the sum only grows, and the
    difference of two samples counts every process that lived in between,
    including ones that were born and died between the samples."""
    procs = read_procs()
    pids = tree_of(procs, roots)
    return sum(procs[p][2] + procs[p][3] for p in pids), len(pids)


def machine_stat():
    """(busy ticks, iowait ticks, total ticks, forks, context switches) from /proc/stat."""
    busy = iowait = total = forks = ctxt = 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:]]
                # user nice system idle iowait irq softirq steal guest guest_nice
                total = sum(v[:8])
                iowait = v[4]
                busy = total - v[3] - v[4]
            elif line.startswith("processes "):
                forks = int(line.split()[1])
            elif line.startswith("ctxt "):
                ctxt = int(line.split()[1])
    return busy, iowait, total, forks, ctxt


class RssSampler(threading.Thread):
    """Samples VmHWM/VmRSS of every process of a system's tree, every interval.

    Per process type (its comm), the largest VmHWM any such process had; per
    sample, the sum of VmRSS over the whole tree, and its peak."""

    def __init__(self, roots, interval=0.5):
        super().__init__(daemon=True)
        self.roots = roots
        self.interval = interval
        self.stop_ev = threading.Event()
        self.hwm = {}      # comm -> KiB
        self.count = {}    # comm -> distinct pids seen
        self.seen = set()
        self.peak_total = 0
        self.peak_total_procs = 0
        # CPU per process type: each process's own ticks when first and
        # last seen (a process gone between two samples loses the ticks it
        # used after the last one; the total in Meter is exact).
        procs = read_procs()
        self.base = {p: procs[p][2] for p in tree_of(procs, roots)}
        self.last = {}
        self.comm = {}

    def sample(self):
        procs = read_procs()
        total = 0
        pids = tree_of(procs, self.roots)
        for pid in pids:
            comm = procs[pid][1]
            self.last[pid] = procs[pid][2]
            self.comm[pid] = comm
            try:
                with open(f"/proc/{pid}/status") as f:
                    st = f.read()
            except OSError:
                continue
            m = re.search(r"^VmHWM:\s+(\d+)", st, re.M)
            r = re.search(r"^VmRSS:\s+(\d+)", st, re.M)
            if not m or not r:
                continue   # kernel thread or zombie
            self.hwm[comm] = max(self.hwm.get(comm, 0), int(m.group(1)))
            if pid not in self.seen:
                self.seen.add(pid)
                self.count[comm] = self.count.get(comm, 0) + 1
            total += int(r.group(1))
        if total > self.peak_total:
            self.peak_total = total
            self.peak_total_procs = len(pids)

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(self.interval)

    def finish(self):
        self.stop_ev.set()
        self.join()
        self.sample()
        by_type = {}
        for pid, t in self.last.items():
            c = self.comm[pid]
            by_type[c] = by_type.get(c, 0) + t - self.base.get(pid, 0)
        return {"hwm_kib": self.hwm, "procs_seen": self.count,
                "peak_total_rss_kib": self.peak_total,
                "procs_at_peak": self.peak_total_procs,
                "cpu_by_type_seconds": {k: v / TICK for k, v in by_type.items()}}


def _nla(kind, data):
    n = 4 + len(data)
    return struct.pack("HH", n, kind) + data + b"\0" * ((4 - n % 4) % 4)


def _nla_parse(b):
    out, i = [], 0
    while i + 4 <= len(b):
        n, kind = struct.unpack_from("HH", b, i)
        if n < 4:
            break
        out.append((kind & 0x3FFF, b[i + 4:i + n]))
        i += (n + 3) & ~3
    return out


class ExitWatch(threading.Thread):
    """Every process exit on the machine, with its CPU time, from the
    kernel's taskstats interface (generic netlink, needs root).

    A process that exits is normally counted through its parent's
    cutime/cstime once the parent reaps it; a process whose parent ignores
    SIGCHLD, or that is reparented, takes its CPU time with it.  The kernel
    sends a taskstats record for every exiting task (pid, parent, command,
    user and system time), which makes the count exact whoever reaps."""

    GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
    CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
    TASKSTATS_CMD_GET, ATTR_REGISTER_CPUMASK = 1, 3
    TYPE_PID, TYPE_STATS, TYPE_AGGR_PID = 1, 3, 4

    def __init__(self):
        super().__init__(daemon=True)
        self.records = []   # (pid, ppid, comm, cpu seconds)
        self.lost = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)   # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind((0, 0))
        fam = self._family()
        mask = f"0-{os.cpu_count() - 1}".encode() + b"\0"
        self._request(fam, self.TASKSTATS_CMD_GET, _nla(self.ATTR_REGISTER_CPUMASK, mask), ack=True)

    def _request(self, kind, cmd, attrs, ack=False):
        payload = struct.pack("BBH", cmd, 1, 0) + attrs
        flags = 1 | (4 if ack else 0)   # NLM_F_REQUEST, NLM_F_ACK
        self.sock.send(struct.pack("IHHII", 16 + len(payload), kind, flags, 1, 0) + payload)
        reply = self.sock.recv(65536)
        if struct.unpack_from("H", reply, 4)[0] == 2:   # NLMSG_ERROR
            err = struct.unpack_from("i", reply, 16)[0]
            if err:
                raise OSError(-err, os.strerror(-err))
        return reply

    def _family(self):
        reply = self._request(self.GENL_ID_CTRL, self.CTRL_CMD_GETFAMILY,
                              _nla(self.CTRL_ATTR_FAMILY_NAME, b"TASKSTATS\0"))
        for kind, val in _nla_parse(reply[20:]):
            if kind == self.CTRL_ATTR_FAMILY_ID:
                return struct.unpack("H", val[:2])[0]
        raise OSError("no TASKSTATS netlink family")

    def run(self):
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:   # ENOBUFS: the kernel dropped records
                self.lost += 1
                continue
            i = 0
            while i + 16 <= len(data):
                n = struct.unpack_from("I", data, i)[0]
                if n < 16:
                    break
                for kind, val in _nla_parse(data[i + 20:i + n]):
                    if kind != self.TYPE_AGGR_PID:
                        continue
                    inner = dict(_nla_parse(val))
                    st = inner.get(self.TYPE_STATS)
                    if not st or len(st) < 168:
                        continue
                    # struct taskstats: ac_comm at 80, ac_pid/ac_ppid at 128,
                    # ac_utime/ac_stime (microseconds) at 152.
                    comm = st[80:112].split(b"\0", 1)[0].decode(errors="replace")
                    pid, ppid = struct.unpack_from("II", st, 128)
                    ut, stime = struct.unpack_from("QQ", st, 152)
                    self.records.append((pid, ppid, comm[:15], (ut + stime) / 1e6))
                i += (n + 3) & ~3

    def mark(self):
        return len(self.records), self.lost


EXITS = None


class Meter:
    """CPU, machine and memory figures of one system over one measured interval.

    CPU: the processes of the system's trees (master and descendants) at
    the start and at the end, from /proc/PID/stat (own utime+stime), plus
    every process that exited in between and belonged to the trees (its
    parent was one of them), from taskstats.  Without taskstats it falls
    back to cutime/cstime, which misses children their parent does not
    reap with wait()."""

    def __init__(self, roots, sample_rss=True):
        self.roots = roots
        self.sample_rss = sample_rss
        self.rss = None

    def start(self):
        if self.sample_rss:
            self.rss = RssSampler(self.roots)
        self.m0 = machine_stat()
        self.mark = EXITS.mark() if EXITS else None
        self.p0 = read_procs()
        self.t0 = tree_of(self.p0, self.roots)
        self.c0, _ = cpu_ticks(self.roots)
        if self.rss:
            self.rss.start()

    def exact_cpu(self, p1, t1):
        """(total seconds, seconds per command name, exits counted) or None."""
        if self.mark is None or EXITS.lost != self.mark[1]:
            return None
        time.sleep(0.2)   # let the last exit records arrive
        exits = EXITS.records[self.mark[0]:]
        members = set(self.t0) | set(t1) | set(self.roots)
        if self.rss:
            members |= self.rss.seen
        counted, changed = set(), True
        while changed:   # children of members are members, however deep
            changed = False
            for k, (pid, ppid, _, _) in enumerate(exits):
                if k not in counted and (pid in members or ppid in members):
                    if ppid in members or pid in self.t0:
                        counted.add(k)
                        members.add(pid)
                        changed = True
        own0 = {p: self.p0[p][2] / TICK for p in self.t0}
        by = {}
        for p in t1:
            c = p1[p][1]
            by[c] = by.get(c, 0.0) + p1[p][2] / TICK - own0.get(p, 0.0)
        for k in counted:
            pid, _, comm, cpu = exits[k]
            by[comm] = by.get(comm, 0.0) + cpu - own0.pop(pid, 0.0)
        return sum(by.values()), by, len(counted)

    def stop(self):
        c1, nprocs = cpu_ticks(self.roots)
        p1 = read_procs()
        t1 = tree_of(p1, self.roots)
        m1 = machine_stat()
        exact = self.exact_cpu(p1, t1)
        out = {
            "cpu_seconds": exact[0] if exact else (c1 - self.c0) / TICK,
            "cpu_method": "taskstats" if exact else "cutime",
            "cpu_seconds_cutime": (c1 - self.c0) / TICK,
            "machine_busy_seconds": (m1[0] - self.m0[0]) / TICK,
            "machine_iowait_seconds": (m1[1] - self.m0[1]) / TICK,
            "machine_total_seconds": (m1[2] - self.m0[2]) / TICK,
            "forks": m1[3] - self.m0[3],
            "context_switches": m1[4] - self.m0[4],
        }
        if exact:
            out["cpu_by_type_seconds"] = exact[1]
            out["exits_counted"] = exact[2]
        if self.rss:
            out["memory"] = self.rss.finish()
        return out


# --------------------------------------------------------------- log parsing

MONTHS = {m: i for i, m in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
LOG_RE = re.compile(
    r"^(\w{3}) +(\d+) (\d\d):(\d\d):(\d\d)(?:\.(\d+))? \S+ ([^\[\s]+)\[(\d+)\]: (.*)$")
QID_RE = re.compile(r"^([0-9A-Za-z]+): (.*)$")


class LogTail:
    """Reads a log file from a remembered offset."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.offset = self.size()

    def size(self):
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def mark(self):
        self.offset = self.size()

    def read_since_mark(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        return data.decode("utf-8", "replace").splitlines()


def log_time(m):
    """Seconds (within the year) of a log line's timestamp, with its fraction."""
    mon, day, hh, mm, ss, frac = m.group(1, 2, 3, 4, 5, 6)
    t = (((MONTHS.get(mon, 1) * 31 + int(day)) * 24 + int(hh)) * 60 + int(mm)) * 60 + int(ss)
    if frac:
        t += int(frac) / 10 ** len(frac)
    return t


def latencies(lines):
    """Delivery latencies in seconds, measured from the 250 to the delivery.

    Neither system logs the 250 itself.  Both smtpds log "QUEUEID:
    client=..." during the transaction and "disconnect from ..." when the
    client's QUIT has been answered, which (smtp-source sends QUIT right
    after the 250 and waits for 221) is within one loopback round trip
    after the 250.  So each queue ID's 250 time is the next disconnect
    line of the same smtpd process after its client= line, and its
    delivery time is its first "status=sent" line."""
    pending = {}    # smtpd pid -> [qid]
    t250, tdone = {}, {}
    for line in lines:
        m = LOG_RE.match(line)
        if not m:
            continue
        prog, pid, msg = m.group(7), m.group(8), m.group(9)
        if prog.endswith("/smtpd"):
            if msg.startswith("disconnect from "):
                t = log_time(m)
                for q in pending.pop(pid, ()):
                    t250[q] = t
                continue
            q = QID_RE.match(msg)
            if q and q.group(2).startswith("client="):
                pending.setdefault(pid, []).append(q.group(1))
            continue
        q = QID_RE.match(msg)
        if q and q.group(2).startswith("to=<") and "status=sent" in q.group(2):
            tdone.setdefault(q.group(1), log_time(m))
    lat = sorted(tdone[q] - t250[q] for q in tdone if q in t250)
    return lat


def read_log(tail, n, timeout=10.0):
    """The log lines since the mark, once n deliveries are logged (postlogd
    may lag a little behind the deliveries themselves)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = tail.read_since_mark()
        if count_sent(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def count_sent(lines):
    n = 0
    for line in lines:
        if "status=sent" in line and ": to=<" in line:
            n += 1
    return n


def last_sent_time(lines):
    t = None
    for line in lines:
        if "status=sent" in line:
            m = LOG_RE.match(line)
            if m:
                t = log_time(m)
    return t


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


# --------------------------------------------------------------- workloads


QUIET_WAIT = 30.0


def settle():
    """Same starting point for every round: dirty pages written back, and
    (as far as we can wait for it) nothing else running."""
    os.sync()
    time.sleep(0.5)
    return wait_quiet(QUIET_WAIT)


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def smtp_source(port, n, sessions, size, rcpt):
    """Returns start, end, error, and smtp-source's own CPU seconds."""
    args = [SMTP_SOURCE, "-s", str(sessions), "-m", str(n), "-l", str(size),
            "-f", SENDER, "-t", rcpt, f"127.0.0.1:{port}"]
    c0 = children_cpu()
    t0 = time.time()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    t1 = time.time()
    cpu = children_cpu() - c0
    if proc.returncode != 0 or proc.stderr.strip():
        # smtp-source reports a refused message on stderr and goes on
        return t0, t1, (proc.stderr.strip() or f"exit {proc.returncode}")[-400:], cpu
    return t0, t1, None, cpu


def wait_quiet(max_wait, busy_limit=0.15):
    """Wait (up to max_wait seconds) until the machine is nearly idle, so
    another job's burst does not land in one side's round only."""
    deadline = time.monotonic() + max_wait
    while True:
        a = machine_stat()
        time.sleep(0.5)
        b = machine_stat()
        busy = (b[0] - a[0]) / max(b[2] - a[2], 1)
        if busy <= busy_limit:
            return busy
        if time.monotonic() > deadline:
            log(f"bench: warning: machine still {100 * busy:.0f}% busy after {max_wait}s; measuring anyway")
            return busy


def wait_progress(current, target, what, stall=60.0):
    """Wait until current() >= target, failing if nothing moves for stall
    seconds.  Polls less often while much is left: listing a directory of
    20,000 files costs milliseconds, which would be taken from the system
    being measured."""
    last, since = -1, time.monotonic()
    while True:
        v = current()
        if v >= target:
            return v
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since > stall:
            raise RuntimeError(f"{what}: stuck at {v} of {target} for {stall:.0f}s")
        time.sleep(min(0.5, max(0.02, (target - v) / 4000.0)))


def max_ctime(d):
    """The latest inode change time in d: when the last delivery was linked
    or renamed into it (both systems' last step)."""
    t = 0
    with os.scandir(d) as it:
        for e in it:
            t = max(t, e.stat(follow_symlinks=False).st_ctime_ns)
    return t / 1e9


def run_inbound(sysobj, n, sessions, size, sample_rss=True):
    """smtp-source into the MX port for the virtual user; done when all n
    files are in the Maildir (and the queue is empty, for the CPU figure)."""
    md = sysobj.maildir()
    retire(md)
    wait_for(sysobj.queue_empty, 60, f"{sysobj.label} queue empty before the round")
    settle()
    tail = LogTail(sysobj.logfile())
    meter = Meter(sysobj.roots(), sample_rss)
    meter.start()
    t0, t1, err, ccpu = smtp_source(sysobj.smtp_port, n, sessions, size, USER)
    new = md / "new"
    wait_progress(lambda: count_files(new), n, f"{sysobj.label} maildir")
    t_done = max_ctime(new)
    wait_for(sysobj.queue_empty, 60, f"{sysobj.label} queue empty after the round", 0.02)
    m = meter.stop()
    lat = latencies(read_log(tail, n))
    return summarize(n, t0, t1, t_done, m, lat, err, ccpu)


def run_relay(sysobj, sink, n, sessions, size):
    wait_for(sysobj.queue_empty, 60, f"{sysobj.label} queue empty before the round")
    settle()
    tail = LogTail(sysobj.logfile())
    base = sink.count
    meter = Meter(sysobj.roots())
    meter.start()
    t0, t1, err, ccpu = smtp_source(sysobj.smtp_port, n, sessions, size, REMOTE_RCPT)
    wait_progress(lambda: sink.count - base, n, f"{sysobj.label} relay to smtp-sink")
    t_done = sink.last_change
    wait_for(sysobj.queue_empty, 60, f"{sysobj.label} queue empty after the round", 0.02)
    m = meter.stop()
    lat = latencies(read_log(tail, n))
    return summarize(n, t0, t1, t_done, m, lat, err, ccpu)


def run_pop3(sysobj, n):
    md = sysobj.maildir()
    reset_maildir(md)
    fill_maildir(md, n, sysobj.uid, sysobj.gid)
    settle()
    user, password = sysobj.pop3_login()
    meter = Meter(sysobj.roots())
    meter.start()
    proc = run([sys.executable, HERE / "pop3_client.py", "127.0.0.1", sysobj.pop3_port,
                user, password, n], check=False, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"pop3 client failed: {proc.stdout}{proc.stderr}")
    r = json.loads(proc.stdout)
    t_quit = r["start"] + r["seconds"]
    # Done when the messages are gone: a server may answer QUIT before it
    # has removed them (RFC 1939 wants the removal first), and that work
    # belongs to the workload too.
    left = count_files(md / "cur") + count_files(md / "new")
    err = None
    if left:
        err = f"{left} messages still in the Maildir at QUIT's reply"
        wait_progress(lambda: n - count_files(md / "cur") - count_files(md / "new"), n,
                      f"{sysobj.label} expunge")
    t_done = max(t_quit, time.time() if left else t_quit)
    time.sleep(0.3)   # let the session's processes finish and be reaped
    m = meter.stop()
    res = summarize(n, r["start"], t_quit, t_done, m, [], err, r["client_cpu_seconds"])
    res["bytes"] = r["bytes"]
    return res


def summarize(n, t0, t1, t_done, m, lat, err, client_cpu):
    elapsed = t_done - t0
    total = max(m["machine_total_seconds"], 1e-9)
    # Machine CPU used by neither the system nor the load generator: the
    # harness itself, kernel threads (writeback, journal) and other jobs.
    other = m["machine_busy_seconds"] - m["cpu_seconds"] - client_cpu
    res = {
        "messages": n,
        "seconds": elapsed,
        "msgs_per_s": n / elapsed if elapsed > 0 else None,
        "accept_seconds": t1 - t0,
        "accept_per_s": n / (t1 - t0) if t1 > t0 else None,
        "cpu_ms_per_msg": 1000.0 * m["cpu_seconds"] / n,
        "machine_busy_pct": 100.0 * m["machine_busy_seconds"] / total,
        "iowait_pct": 100.0 * m["machine_iowait_seconds"] / total,
        "client_cpu_seconds": client_cpu,
        "other_cpu_pct": 100.0 * other / total,
        "forks_per_msg": m["forks"] / n,
        "ctxsw_per_msg": m["context_switches"] / n,
        "latency_n": len(lat),
        "p50_ms": 1000 * pct(lat, 50) if lat else None,
        "p99_ms": 1000 * pct(lat, 99) if lat else None,
        "error": err,
    }
    res["cpu_method"] = m["cpu_method"]
    res["cpu_ms_per_msg_cutime"] = 1000.0 * m["cpu_seconds_cutime"] / n
    if "cpu_by_type_seconds" in m:
        res["cpu_by_type_seconds"] = m["cpu_by_type_seconds"]
    if "memory" in m:
        res["memory"] = m["memory"]
    return res


# --------------------------------------------------------------- strace and perf


def strace_counts(roots, action, outfile):
    """Run action() with strace -f -c attached to every process of the trees."""
    pids = sorted(tree_of(read_procs(), roots))
    args = ["strace", "-f", "-c", "-o", str(outfile)]
    for p in pids:
        args += ["-p", str(p)]
    st = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0 + 0.02 * len(pids))
    try:
        action()
    finally:
        st.send_signal(signal.SIGINT)
        try:
            st.wait(60)
        except subprocess.TimeoutExpired:
            st.kill()
            st.wait()
    calls = {}
    for line in pathlib.Path(outfile).read_text().splitlines():
        f = line.split()
        if len(f) in (5, 6) and f[0][0].isdigit() and f[-1] != "total":
            try:
                calls[f[-1]] = int(f[3])
            except ValueError:
                pass
    return calls


FSYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "syncfs", "sync", "msync")


def strace_summary(calls, n):
    total = sum(calls.values())
    syncs = sum(calls.get(c, 0) for c in FSYNC_CALLS)
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:12]
    return {"messages": n, "syscalls_per_msg": total / n, "fsyncs_per_msg": syncs / n,
            "top_per_msg": {k: v / n for k, v in top}, "raw": calls}


def perf_record(roots, action, outprefix):
    """perf record (cpu-clock samples, user and kernel) of every process of
    the system's trees, and of the children they fork, while action() runs;
    writes the report by process type, by type and object, and by symbol."""
    data = f"{outprefix}.data"
    pids = ",".join(str(p) for p in sorted(tree_of(read_procs(), roots)))
    pr = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "1999", "-p", pids,
                           "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        action()
    finally:
        pr.send_signal(signal.SIGINT)
        pr.wait(60)
    reports = {}
    for name, sort in (("comm", "comm"), ("comm_dso", "comm,dso"), ("sym", "comm,dso,sym")):
        p = run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", sort,
                 "--percent-limit", "0.5"], check=False, timeout=600)
        text = "\n".join(l for l in p.stdout.splitlines() if l and not l.startswith("#"))
        pathlib.Path(f"{outprefix}.{name}.txt").write_text(text + "\n")
        reports[name] = text
    os.unlink(data)
    return reports


# --------------------------------------------------------------- fsync limit


def build_helpers(work):
    (work / "bin").mkdir(exist_ok=True)
    for name in ("fsync_limit", "logsink"):
        run(["cc", "-O2", "-pthread", "-o", work / "bin" / name, HERE / f"{name}.c"])


def fsync_limit(work, seconds):
    exe = work / "bin" / "fsync_limit"
    d = work / "fsync-test"
    d.mkdir(exist_ok=True)
    out = run([exe, d, seconds, 1, 4, 16], timeout=600).stdout
    res = {}
    for m in re.finditer(r"threads=(\d+) ops=\d+ seconds=\S+ ops_per_s=(\S+)", out):
        res[int(m.group(1))] = float(m.group(2))
    return res


# --------------------------------------------------------------- report


def fmt(v, spec=".0f"):
    return "-" if v is None else format(v, spec)


def round_line(wl, r, label, res):
    if "skipped" in res:
        return f"{wl:14s} r{r} {label:8s} skipped: {res['skipped']}"
    if "failed" in res:
        return f"{wl:14s} r{r} {label:8s} FAILED: {res['failed']}"
    s = (f"{wl:14s} r{r} {label:8s} {fmt(res['msgs_per_s']):>6s} msg/s  "
         f"accept {fmt(res['accept_per_s']):>6s}/s  cpu {fmt(res['cpu_ms_per_msg'], '.2f'):>6s} ms/msg  "
         f"p50 {fmt(res['p50_ms'], '.1f'):>7s} ms  p99 {fmt(res['p99_ms'], '.1f'):>7s} ms  "
         f"busy {fmt(res['machine_busy_pct'])}% iowait {fmt(res['iowait_pct'])}%  "
         f"forks/msg {fmt(res['forks_per_msg'], '.2f')}")
    s += f"  client {res['client_cpu_seconds']:.2f}s other {fmt(res.get('other_cpu_pct'))}%"
    if res.get("error"):
        s += f"  ERROR: {res['error']}"
    return s


METRICS = ("msgs_per_s", "accept_per_s", "cpu_ms_per_msg", "p50_ms", "p99_ms",
           "machine_busy_pct", "iowait_pct", "other_cpu_pct", "forks_per_msg", "ctxsw_per_msg")


def medians(rounds):
    ok = [r for r in rounds if "msgs_per_s" in r]
    return {k: median([r.get(k) for r in ok]) for k in METRICS} if ok else None


def ratio(a, b):
    return a / b if a is not None and b else None


def report(results, out):
    """The summary: medians per workload, and Postern's ratio to the other side."""
    lines = []
    lines.append("| workload | system | msg/s | accept/s | CPU ms/msg | p50 ms | p99 ms | "
                 "busy % | iowait % | other % | forks/msg | ctxsw/msg | msg/s ratio | CPU ratio |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for wl, sides in results["workloads"].items():
        ma = medians(sides.get("A", []))
        mb = medians(sides.get("B", []))
        for label, m, other in (("A", ma, mb), ("B", mb, None)):
            name = sides["names"][label]
            if m is None:
                why = next((r.get("skipped") or r.get("failed") for r in sides.get(label, [])
                            if "skipped" in r or "failed" in r), "no data")
                lines.append(f"| {wl} | {name} | {why} | | | | | | | | | | | |")
                continue
            rt = ratio(m["msgs_per_s"], other["msgs_per_s"]) if other else None
            rc = ratio(m["cpu_ms_per_msg"], other["cpu_ms_per_msg"]) if other else None
            lines.append(
                f"| {wl} | {name} | {fmt(m['msgs_per_s'])} | {fmt(m['accept_per_s'])} | "
                f"{fmt(m['cpu_ms_per_msg'], '.2f')} | {fmt(m['p50_ms'], '.1f')} | {fmt(m['p99_ms'], '.1f')} | "
                f"{fmt(m['machine_busy_pct'])} | {fmt(m['iowait_pct'])} | {fmt(m['other_cpu_pct'])} | "
                f"{fmt(m['forks_per_msg'], '.2f')} | {fmt(m['ctxsw_per_msg'], '.1f')} | "
                f"{fmt(rt, '.2f') + 'x' if rt else ''} | {fmt(rc, '.2f') + 'x' if rc else ''} |")
    table = "\n".join(lines)
    out.append("## Medians (ratio = Postern / other side)\n\n" + table + "\n")

    fl = results.get("fsync_limit", {})
    if fl:
        rows = ["| when | 1 thread | 4 threads | 16 threads |", "|---|---:|---:|---:|"]
        for when, v in fl.items():
            rows.append(f"| {when} | {fmt(v.get(1) or v.get('1'))} | {fmt(v.get(4) or v.get('4'))} | "
                        f"{fmt(v.get(16) or v.get('16'))} |")
        out.append("## Disk: 2 KiB write + fsync + rename per second\n\n" + "\n".join(rows) + "\n")

    st = results.get("strace", {})
    if st:
        rows = ["| workload | system | syscalls/msg | fsyncs/msg | disk bound msg/s (4 threads) | top syscalls per msg |",
                "|---|---|---:|---:|---:|---|"]
        lim4 = None
        for v in fl.values():
            lim4 = v.get(4) or v.get("4")
            break
        for key, s in st.items():
            wl, name = key.split("/", 1)
            if "error" in s:
                rows.append(f"| {wl} | {name} | {s['error']} | | | |")
                continue
            bound = (lim4 / s["fsyncs_per_msg"]) if lim4 and s["fsyncs_per_msg"] else None
            top = ", ".join(f"{k} {v:.1f}" for k, v in list(s["top_per_msg"].items())[:8])
            rows.append(f"| {wl} | {name} | {s['syscalls_per_msg']:.1f} | {s['fsyncs_per_msg']:.2f} | "
                        f"{fmt(bound)} | {top} |")
        out.append("## System calls (strace -f -c, small run)\n\n" + "\n".join(rows) + "\n")

    mem_rows = ["| workload | system | peak total RSS MiB (processes) | peak RSS per process type, MiB (count seen) |",
                "|---|---|---:|---|"]
    for wl, sides in results["workloads"].items():
        for label in ("A", "B"):
            rs = [r for r in sides.get(label, []) if "memory" in r]
            if not rs:
                continue
            mem = rs[0]["memory"]
            peak = max(r["memory"]["peak_total_rss_kib"] for r in rs)
            hwm = {}
            for r in rs:
                for k, v in r["memory"]["hwm_kib"].items():
                    hwm[k] = max(hwm.get(k, 0), v)
            types = ", ".join(f"{k} {v / 1024:.1f} ({mem['procs_seen'].get(k, 0)})"
                              for k, v in sorted(hwm.items(), key=lambda kv: -kv[1]))
            mem_rows.append(f"| {wl} | {sides['names'][label]} | {peak / 1024:.1f} "
                            f"({mem['procs_at_peak']}) | {types} |")
    out.append("## Memory (VmHWM / VmRSS sampled every 0.5 s)\n\n" + "\n".join(mem_rows) + "\n")

    cpu_rows = ["| workload | system | CPU ms/msg by process type (median over rounds) | not attributed |",
                "|---|---|---|---:|"]
    for wl, sides in results["workloads"].items():
        for label in ("A", "B"):
            rs = [r for r in sides.get(label, []) if "memory" in r and "cpu_by_type_seconds" in r["memory"]]
            if not rs:
                continue
            types = set()
            for r in rs:
                types.update(r["memory"]["cpu_by_type_seconds"])
            per = {t: median([1000.0 * r["memory"]["cpu_by_type_seconds"].get(t, 0) / r["messages"]
                              for r in rs]) for t in types}
            rest = median([r["cpu_ms_per_msg"] - 1000.0 * sum(r["memory"]["cpu_by_type_seconds"].values())
                           / r["messages"] for r in rs])
            txt = ", ".join(f"{t} {v:.2f}" for t, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.005)
            cpu_rows.append(f"| {wl} | {sides['names'][label]} | {txt} | {fmt(rest, '.2f')} |")
    out.append("## CPU by process type (own user+system time, sampled every 0.5 s; processes "
               "that exit between samples lose their last ticks, shown as not attributed)\n\n"
               + "\n".join(cpu_rows) + "\n")
    return "\n".join(out)


# --------------------------------------------------------------- main

CLEANUP = []


def cleanup():
    while CLEANUP:
        fn = CLEANUP.pop()
        try:
            fn()
        except Exception as e:  # keep tearing down the rest
            log(f"bench: cleanup: {e}")


def main():
    ap = argparse.ArgumentParser(description="Postern against Postfix 3.7 and Dovecot 2.3")
    ap.add_argument("-n", type=int, default=20000, help="messages per inbound/relay round (default 20000)")
    ap.add_argument("-r", "--rounds", type=int, default=3, help="rounds per workload and system (default 3)")
    ap.add_argument("--build", default=os.environ.get("POSTERN_BUILD", str(SRC / "build")))
    ap.add_argument("--workloads", default="inbound-10,inbound-50,inbound-100,relay,pop3,large")
    ap.add_argument("--pop3-n", type=int, help="messages for pop3-retrieve (default min(5000, n))")
    ap.add_argument("--large-n", type=int, help="5 MiB messages for large (default 200, or n/100 if smaller)")
    ap.add_argument("--strace-n", type=int, help="messages in the strace runs (default 500, or n/4)")
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--perf", action="store_true", help="also record a perf profile of each system")
    ap.add_argument("--fsync-seconds", type=float, help="seconds per fsync-limit measurement")
    ap.add_argument("--out", default=None, help="directory for results (default ./bench-out-DATE)")
    ap.add_argument("--workdir", default="/tmp", help="where the instances live (same FS as a real queue)")
    ap.add_argument("--keep", action="store_true", help="keep the instances' directory")
    ap.add_argument("--postern-param", action="append", default=[], metavar="NAME=VALUE",
                    help="a main.cf setting for the Postern instance (repeatable; for experiments)")
    ap.add_argument("--postfix-param", action="append", default=[], metavar="NAME=VALUE",
                    help="a main.cf setting for the Postfix instance (repeatable)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="seconds to wait for an idle machine before each round (default 30)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("bench: needs root (Postfix's master runs as root)")
    build = pathlib.Path(args.build).resolve()
    if not (build / "cli" / "postern").exists():
        sys.exit(f"bench: {build}/cli/postern is not built")
    for tool in (SMTP_SOURCE, SMTP_SINK, POSTFIX, DOVECOT):
        if not os.path.exists(tool):
            sys.exit(f"bench: {tool} missing (bench/run installs it)")
    global QUIET_WAIT
    QUIET_WAIT = args.quiet_wait
    n = args.n
    pop3_n = args.pop3_n or min(5000, n)
    large_n = args.large_n or max(10, min(200, n // 100))
    strace_n = args.strace_n or max(100, min(500, n // 4))
    fsync_secs = args.fsync_seconds or (2.0 if n < 10000 else 5.0)
    wls = [w.strip() for w in args.workloads.split(",") if w.strip()]
    out_dir = pathlib.Path(args.out or f"bench-out-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    work = pathlib.Path(tempfile.mkdtemp(prefix="postern-bench-", dir=args.workdir))
    os.chmod(work, 0o755)
    global TRASH
    TRASH = work / "trash"
    TRASH.mkdir()
    if not args.keep:
        CLEANUP.append(lambda: shutil.rmtree(work, ignore_errors=True))
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "n": n, "rounds": args.rounds,
               "postern_params": args.postern_param, "postfix_params": args.postfix_param,
               "build": str(build), "workdir": str(work), "workloads": {}, "fsync_limit": {},
               "strace": {}, "machine": machine_info()}
    log(f"bench: n={n} rounds={args.rounds} pop3={pop3_n} large={large_n}x5MiB "
        f"build={build} work={work} out={out_dir}")

    build_helpers(work)
    global EXITS
    try:
        EXITS = ExitWatch()
        EXITS.start()
    except OSError as e:
        log(f"bench: warning: no taskstats ({e}); CPU of processes nobody reaps is not counted")
    log("bench: fsync limit (2 KiB write + fsync + rename) at 1, 4, 16 threads ...")
    results["fsync_limit"]["start"] = fsync_limit(work, fsync_secs)
    log(f"bench: fsync/s at start: {results['fsync_limit']['start']}")

    sink = Sink(free_ports(1)[0])
    CLEANUP.append(sink.stop)
    pt = Postern(work, build, sink.port, args.postern_param)
    pt.setup()
    CLEANUP.append(pt.stop)
    pf = Postfix(work, sink.port, pt.uid, pt.gid, args.postfix_param)
    pf.setup()
    CLEANUP.append(pf.stop)
    dc = Dovecot(work, pt.uid, pt.gid, pt.password)
    dc.setup()
    CLEANUP.append(dc.stop)
    for s in (pt, pf, dc):
        s.start()
    log(f"bench: postern smtp {pt.smtp_port} pop3 {pt.pop3_port}; postfix smtp {pf.smtp_port}; "
        f"dovecot pop3 {dc.pop3_port}; smtp-sink {sink.port}")
    # One warm-up message each, so first-use costs (table opens, process starts) are not measured.
    for s in (pt, pf):
        run_inbound(s, 20, 2, 2048, sample_rss=False)

    def one(wl, sysobj):
        if wl.startswith("inbound-"):
            return run_inbound(sysobj, n, int(wl.split("-")[1]), 2048)
        if wl == "relay":
            if isinstance(sysobj, Postern) and not sysobj.has_smtp:
                return {"skipped": "no smtp client yet"}
            return run_relay(sysobj, sink, n, 10, 2048)
        if wl == "pop3":
            return run_pop3(sysobj, pop3_n)
        if wl == "large":
            return run_inbound(sysobj, large_n, 10, 5 * 1024 * 1024)
        raise SystemExit(f"bench: unknown workload {wl}")

    for wl in wls:
        sides = (pt, dc) if wl == "pop3" else (pt, pf)
        entry = results["workloads"].setdefault(
            wl, {"names": {"A": "postern", "B": sides[1].label}, "A": [], "B": []})
        for r in range(1, args.rounds + 1):
            for label, s in zip(("A", "B"), sides):
                try:
                    res = one(wl, s)
                except Exception as e:  # one failed round must not lose the others
                    res = {"failed": str(e)[:500]}
                entry[label].append(res)
                log(round_line(wl, r, s.label, res))
                if "skipped" in res:
                    break
            if any("skipped" in x for x in entry["A"]):
                break
        ma, mb = medians(entry["A"]), medians(entry["B"])
        if ma and mb:
            log(f"{wl:14s} median: postern {fmt(ma['msgs_per_s'])} msg/s, {sides[1].label} "
                f"{fmt(mb['msgs_per_s'])} msg/s, ratio {ratio(ma['msgs_per_s'], mb['msgs_per_s']):.2f}x; "
                f"CPU {fmt(ma['cpu_ms_per_msg'], '.2f')} vs {fmt(mb['cpu_ms_per_msg'], '.2f')} ms/msg, "
                f"ratio {ratio(ma['cpu_ms_per_msg'], mb['cpu_ms_per_msg']):.2f}x")
        save(results, out_dir)

    if not args.no_strace:
        plan = [("inbound-10", pt), ("inbound-10", pf), ("pop3", pt), ("pop3", dc)]
        if "relay" in wls:
            if pt.has_smtp:
                plan.insert(2, ("relay", pt))
            plan.insert(3, ("relay", pf))
        for wl, s in plan:
            key = f"{wl}/{s.label}"
            outfile = out_dir / f"strace-{wl}-{s.label}.txt"
            try:
                if wl == "pop3":
                    md = s.maildir()
                    reset_maildir(md)
                    fill_maildir(md, strace_n, s.uid, s.gid)
                    user, pw = s.pop3_login()
                    act = lambda s=s, user=user, pw=pw: run(  # noqa: E731
                        [sys.executable, HERE / "pop3_client.py", "127.0.0.1", s.pop3_port,
                         user, pw, strace_n], timeout=1800)
                elif wl == "relay":
                    act = lambda s=s: run_relay(s, sink, strace_n, 10, 2048)  # noqa: E731
                else:
                    act = lambda s=s: run_inbound(s, strace_n, 10, 2048, sample_rss=False)  # noqa: E731
                calls = strace_counts(s.roots(), act, outfile)
                results["strace"][key] = strace_summary(calls, strace_n)
                sm = results["strace"][key]
                log(f"strace {key}: {sm['syscalls_per_msg']:.1f} syscalls/msg, "
                    f"{sm['fsyncs_per_msg']:.2f} fsyncs/msg")
            except Exception as e:
                results["strace"][key] = {"error": str(e)[:300]}
                log(f"strace {key}: FAILED: {e}")
        save(results, out_dir)

    if args.perf:
        for s in (pt, pf):
            try:
                perf_record(s.roots(), lambda s=s: run_inbound(s, n, 10, 2048, sample_rss=False),
                            out_dir / f"perf-inbound-10-{s.label}")
                log(f"perf: wrote {out_dir}/perf-inbound-10-{s.label}.*.txt")
            except Exception as e:
                log(f"perf {s.label}: FAILED: {e}")
        for s in (pt, dc):
            try:
                def act(s=s):
                    md = s.maildir()
                    reset_maildir(md)
                    fill_maildir(md, pop3_n, s.uid, s.gid)
                    user, pw = s.pop3_login()
                    run([sys.executable, HERE / "pop3_client.py", "127.0.0.1", s.pop3_port,
                         user, pw, pop3_n], timeout=1800)
                perf_record(s.roots(), act, out_dir / f"perf-pop3-{s.label}")
                log(f"perf: wrote {out_dir}/perf-pop3-{s.label}.*.txt")
            except Exception as e:
                log(f"perf {s.label}: FAILED: {e}")

    log("bench: fsync limit again, at the end ...")
    results["fsync_limit"]["end"] = fsync_limit(work, fsync_secs)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save(results, out_dir)
    text = report(results, [f"# bench/run {results['started']} .. {results['finished']}, "
                            f"n={n}, {args.rounds} rounds, {results['machine']}\n"])
    (out_dir / "summary.md").write_text(text)
    log("\n" + text)
    log(f"bench: results in {out_dir} (results.json, summary.md)")


def machine_info():
    cpus = os.cpu_count()
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    kernel = os.uname().release
    return f"{cpus} CPUs ({model}), Linux {kernel}"


def save(results, out_dir):
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()

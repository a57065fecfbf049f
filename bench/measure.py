"""measure.py - what the benchmark measures: CPU and memory from /proc and
taskstats, latencies from the logs, system calls (strace), profiles
(perf) and the disk's own fsync limit."""
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

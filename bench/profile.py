#!/usr/bin/python3
"""profile.py - instructions per message, by process type and function.

Runs the daemons that do the per-message work of Postern and of Postfix
under callgrind (valgrind), sends a small inbound-local or relay load
(smtp-source, 10 sessions) to each, and reports user-space instructions
per message for each process type and the functions that execute them.
Instruction counts do not depend on the machine's load, so they show the
effect of a code change where throughput is too noisy (this machine's
virtual CPUs have no hardware counters for `perf stat -e instructions`).
Kernel time is not in these counts: see bench.py --perf and the strace
tables for that.

Usage (root): bench/profile.py --build DIR [-n 300] [--workload inbound|relay] [--out DIR]
Both systems are set up exactly as in bench.py, except that their
daemon_directory is a directory of wrappers (the profiled daemons run as
`valgrind --tool=callgrind REAL ...`, the rest are links to the real
programs) and no service is chrooted (callgrind writes its output at exit,
outside any chroot).  Only instructions inside the daemons' service loops
are counted (--toggle-collect), not process start-up.
"""
import argparse
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402

PROFILED = {
    "postern": ("smtpd", "cleanup", "qmgr", "local", "smtp"),
    "postfix": ("smtpd", "cleanup", "qmgr", "virtual", "trivial-rewrite", "smtp"),
}
# Count only inside the daemons' service loops: what a process does before
# it serves its first client (exec, configuration, table opens) is left out,
# so a small run is not dominated by process start-up.  Postern's
# one-client-at-a-time daemons serve from server_single_loop; qmgr (an
# event server) works inside event_run (server_event_loop is inlined away).
# Every Postfix daemon serves its clients from event_loop.  A function
# named here must exist as a symbol, or the daemon counts nothing (the
# report warns about such daemons).
COLLECT = {
    "postern": {"qmgr": ("event_run",), "*": ("server_single_loop",)},
    "postfix": {"*": ("event_loop",)},
}


def wrapper_dir(real_dir, out_dir, names, collect, dest):
    """dest/: links to every program in real_dir, callgrind wrappers for names."""

    dest.mkdir(parents=True)
    for entry in sorted(os.listdir(real_dir)):
        src = pathlib.Path(real_dir) / entry
        if not src.is_file() or not os.access(src, os.X_OK):
            if src.is_file():
                os.symlink(src, dest / entry)
            continue
        if entry in names:
            toggles = " ".join(f"--toggle-collect={f}" for f in collect.get(entry, collect["*"]))
            w = dest / entry
            w.write_text("#!/bin/sh\n"
                         f"exec valgrind --tool=callgrind -q {toggles} "
                         f"--callgrind-out-file={out_dir}/{entry}.%p.cg "
                         f"{src} \"$@\"\n")
            os.chmod(w, 0o755)
        else:
            os.symlink(src, dest / entry)


def no_chroot(master_cf):
    lines = []
    for line in master_cf.read_text().splitlines():
        f = line.split()
        if line and not line[0].isspace() and not line.startswith("#") and len(f) >= 8:
            f[4] = "n"
            line = " ".join(f)
        lines.append(line)
    master_cf.write_text("\n".join(lines) + "\n")


def set_param(main_cf, name, value):
    text = main_cf.read_text()
    text, k = re.subn(rf"^{name}\s*=.*$", f"{name} = {value}", text, flags=re.M)
    if k == 0:
        text += f"{name} = {value}\n"
    main_cf.write_text(text)


def totals(cg_file):
    """Total instructions (Ir) in one callgrind output file."""
    with open(cg_file, errors="replace") as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    return 0


FN_RE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?)\s*$")


def functions(cg_file):
    """function -> self instructions, from callgrind_annotate."""
    p = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100",
                        cg_file], capture_output=True, text=True, timeout=300)
    out = {}
    started = False
    for line in p.stdout.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started or line.startswith("-") or "=>" in line:
            continue
        m = FN_RE.match(line)
        if m and ":" in m.group(2):
            n = int(m.group(1).replace(",", ""))
            name = m.group(2)
            name = re.sub(r"^\S*?/([^/\s]+:)", r"\1", name)   # shorten paths
            out[name] = out.get(name, 0) + n
    return out


class OpenFiles(threading.Thread):
    """Makes each new callgrind file writable by everyone, every 0.1 s.

    callgrind creates its output file when the daemon starts, as root, mode
    0600, and rewrites it at exit; by then the daemon runs as its own user
    and could not open it, and callgrind would write nothing."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.done = set()
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            for f in os.listdir(self.d):
                if f not in self.done:
                    try:
                        os.chmod(self.d / f, 0o666)
                        self.done.add(f)
                    except OSError:
                        pass
            self.stop_ev.wait(0.1)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def profiled(roots):
    """pid -> command line of the callgrind processes in the trees."""
    procs = bench.read_procs()
    out = {}
    for pid in bench.tree_of(procs, roots):
        if procs[pid][1].startswith("callgrind"):
            try:
                out[pid] = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                pass
    return out


def finish_callgrind(s):
    """Let every profiled daemon exit normally, so its file is complete:
    the others leave after max_idle; qmgr never idles out, so it gets a
    SIGTERM of its own (callgrind writes its file on a fatal signal too,
    but not when the master's stop escalates to SIGKILL)."""
    roots = s.roots()
    try:
        bench.wait_for(lambda: all("/qmgr" in c for c in profiled(roots).values()), 120,
                       "idle daemons to exit", 0.5)
    except RuntimeError as e:
        print(f"profile: {e}")
    for pid, cmd in profiled(roots).items():
        if "/qmgr" in cmd:
            os.kill(pid, signal.SIGTERM)
            bench.wait_for(lambda pid=pid: not alive(pid), 60, "qmgr to exit", 0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("POSTERN_BUILD", str(bench.SRC / "build")))
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--workload", choices=("inbound", "relay"), default="inbound")
    ap.add_argument("--out", default=None)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("profile: needs root")
    if not shutil.which("valgrind"):
        sys.exit("profile: valgrind is not installed (apt-get install valgrind)")
    build = pathlib.Path(args.build).resolve()
    out_dir = pathlib.Path(args.out or f"profile-out-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    work = pathlib.Path(tempfile.mkdtemp(prefix="postern-bench-prof-", dir="/tmp"))
    os.chmod(work, 0o755)
    bench.systems.TRASH = work / "trash"
    bench.systems.TRASH.mkdir()
    bench.QUIET_WAIT = 5.0
    cg = work / "cg"
    cg.mkdir()
    os.chmod(cg, 0o1777)
    bench.build_helpers(work)
    opener = OpenFiles(cg)
    opener.start()
    stops = [opener.stop_ev.set]
    try:
        sink = bench.Sink(bench.free_ports(1)[0])
        stops.append(sink.stop)
        pt = bench.Postern(work, build, sink.port)
        pt.setup()
        stops.append(pt.stop)
        if args.workload == "relay" and not pt.has_smtp:
            sys.exit("profile: this build has no smtp client")
        wrapper_dir(build / "libexec", cg, PROFILED["postern"], COLLECT["postern"], work / "pt-bin")
        set_param(pt.dir / "main.cf", "daemon_directory", work / "pt-bin")
        # Idle daemons exit by themselves soon after the run, so callgrind
        # can write its files; a stop would kill them before it is done.
        set_param(pt.dir / "main.cf", "max_idle", "3s")
        no_chroot(pt.dir / "master.cf")
        pf = bench.Postfix(work, sink.port, pt.uid, pt.gid)
        pf.setup()
        stops.append(pf.stop)
        wrapper_dir("/usr/lib/postfix/sbin", cg, PROFILED["postfix"], COLLECT["postfix"], work / "pf-bin")
        set_param(pf.dir / "conf" / "main.cf", "daemon_directory", work / "pf-bin")
        set_param(pf.dir / "conf" / "main.cf", "max_idle", "3s")
        results = {}
        for s in (pt, pf):
            s.start()
            rcpt = bench.USER if args.workload == "inbound" else bench.REMOTE_RCPT
            time.sleep(2)
            t0 = time.time()
            subprocess.run([bench.SMTP_SOURCE, "-s", "10", "-m", str(args.n), "-l", "2048",
                            "-f", bench.SENDER, "-t", rcpt, f"127.0.0.1:{s.smtp_port}"],
                           check=True, timeout=3600)
            if args.workload == "inbound":
                bench.wait_progress(lambda: bench.count_files(s.maildir() / "new"), args.n,
                                    f"{s.label} deliveries", stall=300)
            bench.wait_for(s.queue_empty, 600, "queue empty", 0.2)
            elapsed = time.time() - t0
            finish_callgrind(s)
            s.stop()
            files = [f for f in os.listdir(cg) if f.endswith(".cg") or ".cg." in f]
            per_type, fn_type = {}, {}
            for f in files:
                ptype = f.split(".")[0]
                if not f.startswith(PROFILED[s.label]):
                    continue
                n = totals(cg / f)
                if n == 0:
                    continue   # a process started after the run (killed at stop)
                per_type[ptype] = per_type.get(ptype, 0) + n
                fns = fn_type.setdefault(ptype, {})
                for k, v in functions(cg / f).items():
                    fns[k] = fns.get(k, 0) + v
            dest = out_dir / f"callgrind-{s.label}"
            dest.mkdir(exist_ok=True)
            for f in os.listdir(cg):
                shutil.move(str(cg / f), str(dest / f))
            results[s.label] = (per_type, fn_type, elapsed)
    finally:
        for fn in reversed(stops):
            try:
                fn()
            except Exception as e:
                print(f"profile: cleanup: {e}")
        shutil.rmtree(work, ignore_errors=True)

    n = args.n
    lines = [f"# callgrind: user-space instructions per message, {args.workload}, "
             f"{n} messages of 2 KiB, 10 sessions\n"]
    lines.append("| system | total | by process type (instructions per message) |")
    lines.append("|---|---:|---|")
    for label, (per_type, _, _) in results.items():
        total = sum(per_type.values())
        parts = ", ".join(f"{t} {v / n / 1000:.0f}k" for t, v in sorted(per_type.items(), key=lambda kv: -kv[1]))
        lines.append(f"| {label} | {total / n / 1000:.0f}k | {parts} |")
    for label, (per_type, fn_type, _) in results.items():
        silent = [t for t in PROFILED[label] if per_type.get(t, 0) == 0 and
                  (args.workload == "relay" or t != "smtp")]
        if silent:
            lines.append(f"\nWarning: {label}: no instructions counted for {', '.join(silent)} "
                         "(not used by this workload, or its COLLECT function is not a symbol).")
        lines.append(f"\n## {label}: top functions (self instructions per message)\n")
        for t, v in sorted(per_type.items(), key=lambda kv: -kv[1]):
            top = sorted(fn_type.get(t, {}).items(), key=lambda kv: -kv[1])[:args.top]
            lines.append(f"- **{t}** ({v / n / 1000:.0f}k): " +
                         "; ".join(f"{k} {c / n / 1000:.1f}k" for k, c in top))
    text = "\n".join(lines) + "\n"
    (out_dir / "callgrind.md").write_text(text)
    print(text)
    print(f"profile: callgrind files in {out_dir}")


if __name__ == "__main__":
    main()

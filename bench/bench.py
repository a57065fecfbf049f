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

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchlib import *  # noqa: E402,F401,F403
from measure import *  # noqa: E402,F401,F403
from systems import *  # noqa: E402,F401,F403
from report import *  # noqa: E402,F401,F403
import measure  # noqa: E402
import systems  # noqa: E402

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
    # ext4: each system's directory in block groups of its own (the Orlov
    # allocator spreads the subdirectories of a "top" directory), so one
    # system's deleted inodes never slow the other's allocations.
    subprocess.run(["chattr", "+T", str(work)], stderr=subprocess.DEVNULL, check=False)
    systems.TRASH = work / "trash"  # retire() moves used Maildirs there
    systems.TRASH.mkdir()
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
    try:
        measure.EXITS = ExitWatch()  # every Meter reads the exits it records
        measure.EXITS.start()
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

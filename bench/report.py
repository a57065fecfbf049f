"""report.py - the per-round lines, the medians and ratios, and the
summary tables (summary.md)."""
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

"""benchlib.py - the benchmark's constants and small helpers (bench/README.md)."""
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

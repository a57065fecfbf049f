"""Helpers to run Postern programs and instances from a build tree."""
import os
import pathlib
import signal
import socket
import subprocess
import time

SRC = pathlib.Path(__file__).resolve().parents[2]


def build_dir():
    env = os.environ.get("POSTERN_BUILD")
    return pathlib.Path(env) if env else SRC / "build"


def run(args, *, input=None, timeout=30, check=False, env=None, cwd=None):
    """Run a command with a timeout; returns CompletedProcess with text output."""
    proc = subprocess.run(
        [str(a) for a in args],
        input=input,
        capture_output=True,
        text=isinstance(input, str) or input is None,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


ECHOD = "tests/echod"


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


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until it is true; bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def proc_children(ppid):
    """Pids whose parent is ppid, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == ppid:
            out.append(int(entry))
    return out


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


class Instance:
    """A Postern instance made by 'postern init' in a temporary directory."""

    def __init__(self, path, postern, ports=None):
        self.dir = pathlib.Path(path)
        self.postern = postern
        self.build = pathlib.Path(postern).resolve().parents[1]
        self.ports = ports or free_ports(5)
        self.started = False

    def cmd(self, *args, timeout=60, check=False, input=None):
        return run([self.postern, "-c", self.dir, *args], timeout=timeout, check=check, input=input)

    def init(self):
        proc = run([self.postern, "init", "-p", ",".join(map(str, self.ports)), self.dir], check=True)
        self.init_output = proc.stdout
        return self

    def conf(self, **params):
        args = [f"{k}={v}" for k, v in params.items()]
        self.cmd("conf", "-e", *args, check=True)

    def write_master_cf(self, text):
        (self.dir / "master.cf").write_text(text)

    def echod(self):
        return str(self.build / ECHOD)

    def start(self):
        proc = self.cmd("start")
        if proc.returncode != 0:
            raise AssertionError(f"start failed: {proc.stderr}\n{self.log()}")
        self.started = True
        return proc

    def stop(self):
        proc = self.cmd("stop")
        self.started = False
        return proc

    def reload(self):
        return self.cmd("reload", check=True)

    def master_pid(self):
        try:
            return int((self.dir / "queue" / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def children(self):
        pid = self.master_pid()
        return proc_children(pid) if pid else []

    def log(self):
        try:
            return (self.dir / "maillog").read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self):
        """Stop the master if it runs; kill what is left by pid (never by name)."""
        pid = self.master_pid()
        if self.started or (pid and pid_alive(pid)):
            try:
                self.stop()
            except Exception:
                pass
        pid = self.master_pid()
        if pid and pid_alive(pid):
            for child in proc_children(pid):
                try:
                    os.kill(child, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

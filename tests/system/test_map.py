"""Lookup tables as an admin builds and queries them: "postern map" and
"postern hash-password", run from the build tree ($POSTERN_BUILD)."""
import os
import pathlib
import pty
import re
import select
import stat
import subprocess
import time
import warnings

import pytest

BUILD = os.environ.get("POSTERN_BUILD")
if not BUILD:
    pytest.skip("POSTERN_BUILD is not set (point it at a build directory)", allow_module_level=True)
POSTERN = pathlib.Path(BUILD) / "cli" / "postern"

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt  # deprecated, still in Debian 12's Python 3.11
    except ImportError:  # pragma: no cover - newer Pythons
        crypt = None

TIMEOUT = 30


def run(*args, input=None, cwd=None):
    if not POSTERN.exists():
        pytest.skip(f"{POSTERN} not built")
    return subprocess.run(
        [str(POSTERN)] + [str(a) for a in args],
        input=input,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
    )


def postmap(confdir, *args):
    """postern map with an explicit (possibly empty) config directory."""
    return run("map", "-c", confdir, *args)


def debris(directory):
    return [p.name for p in pathlib.Path(directory).iterdir() if ".tmp" in p.name]


SOURCE = """\
# virtual aliases
Info@Example.COM    alice@example.com
sales@example.com   bob@example.com,
        carol@example.com

postmaster          root
"""
ENTRIES = {
    "info@example.com": "alice@example.com",
    "sales@example.com": "bob@example.com, carol@example.com",
    "postmaster": "root",
}


@pytest.fixture
def table(tmp_path):
    src = tmp_path / "virtual"
    src.write_text(SOURCE)
    proc = postmap(tmp_path, src)
    assert proc.returncode == 0, proc.stderr
    return src


def test_build_query_dump_roundtrip(tmp_path, table):
    db = tmp_path / "virtual.db"
    assert db.exists()
    assert debris(tmp_path) == []
    kind = subprocess.run(["file", "-b", str(db)], capture_output=True, text=True, timeout=TIMEOUT)
    assert "Berkeley DB" in kind.stdout and "Hash" in kind.stdout
    for key, value in ENTRIES.items():
        proc = postmap(tmp_path, "-q", key, table)
        assert (proc.returncode, proc.stdout) == (0, value + "\n")
        # Keys were folded when built, and are folded when queried.
        proc = postmap(tmp_path, "-q", key.upper(), f"hash:{table}")
        assert (proc.returncode, proc.stdout) == (0, value + "\n")
    dump = postmap(tmp_path, "-s", table)
    assert dump.returncode == 0
    assert sorted(dump.stdout.splitlines()) == sorted(f"{k} {v}" for k, v in ENTRIES.items())


def test_query_exit_codes(tmp_path, table):
    assert postmap(tmp_path, "-q", "postmaster", table).returncode == 0
    proc = postmap(tmp_path, "-q", "nobody@example.com", table)
    assert (proc.returncode, proc.stdout) == (1, "")
    # A table that cannot be read is try-again (2), never "not found".
    proc = postmap(tmp_path, "-q", "postmaster", tmp_path / "absent")
    assert proc.returncode == 2
    assert "absent.db" in proc.stderr
    (tmp_path / "junk.db").write_bytes(os.urandom(8192))
    proc = postmap(tmp_path, "-q", "postmaster", tmp_path / "junk")
    assert proc.returncode == 2
    # The wrong kind of table is an error too.
    proc = postmap(tmp_path, "-q", "postmaster", f"btree:{table}")
    assert proc.returncode == 2
    # Usage errors.
    assert postmap(tmp_path, "-q", "a", "-s", table).returncode == 2
    assert postmap(tmp_path).returncode == 2


def test_delete(tmp_path, table):
    inode = (tmp_path / "virtual.db").stat().st_ino
    proc = postmap(tmp_path, "-d", "POSTMASTER", table)
    assert proc.returncode == 0, proc.stderr
    # Deleting writes a new file and renames it: readers never see a half-edited table.
    assert (tmp_path / "virtual.db").stat().st_ino != inode
    assert postmap(tmp_path, "-q", "postmaster", table).returncode == 1
    assert postmap(tmp_path, "-d", "postmaster", table).returncode == 1
    for key in ("info@example.com", "sales@example.com"):
        assert postmap(tmp_path, "-q", key, table).stdout == ENTRIES[key] + "\n"
    assert postmap(tmp_path, "-d", "x", tmp_path / "absent").returncode == 2
    assert postmap(tmp_path, "-d", "x", f"texthash:{table}").returncode == 2
    assert debris(tmp_path) == []


def test_source_error_keeps_old_table(tmp_path, table):
    db = tmp_path / "virtual.db"
    before = (db.read_bytes(), db.stat().st_ino)
    table.write_text("good value\nbroken-line-without-value\nlater value\n")
    proc = postmap(tmp_path, table)
    assert proc.returncode == 1
    assert f"{table}:2:" in proc.stderr
    assert (db.read_bytes(), db.stat().st_ino) == before
    assert debris(tmp_path) == []
    assert postmap(tmp_path, "-q", "postmaster", table).stdout == "root\n"
    # Other source errors: continuation first, NUL byte, over-long line, missing file.
    for text, line in ((" starts indented\n", 1), ("a 1\nb \0 c\n", 2), ("k " + "x" * 70000 + "\n", 1)):
        table.write_bytes(text.encode())
        proc = postmap(tmp_path, table)
        assert proc.returncode == 1
        assert f"{table}:{line}:" in proc.stderr
        assert (db.read_bytes(), db.stat().st_ino) == before
    proc = postmap(tmp_path, tmp_path / "no-such-source")
    assert proc.returncode == 1
    assert "no-such-source" in proc.stderr


def test_duplicates_and_case(tmp_path):
    src = tmp_path / "t"
    src.write_text("Key first\nkey second\nOther x\n")
    proc = postmap(tmp_path, src)
    assert proc.returncode == 0
    assert f"{src}:2: duplicate" in proc.stderr
    assert postmap(tmp_path, "-q", "KEY", src).stdout == "second\n"
    # -f keeps case when building and when querying.
    proc = postmap(tmp_path, "-f", src)
    assert proc.returncode == 0
    assert "duplicate" not in proc.stderr
    assert postmap(tmp_path, "-f", "-q", "Key", src).stdout == "first\n"
    assert postmap(tmp_path, "-f", "-q", "key", src).stdout == "second\n"
    assert postmap(tmp_path, "-f", "-q", "other", src).returncode == 1


def test_mode_follows_source(tmp_path):
    src = tmp_path / "secrets"
    src.write_text("user@example.com $y$j9T$abc$def\n")
    src.chmod(0o640)
    assert postmap(tmp_path, src).returncode == 0
    assert stat.S_IMODE((tmp_path / "secrets.db").stat().st_mode) == 0o640
    src.chmod(0o600)
    assert postmap(tmp_path, src).returncode == 0
    assert stat.S_IMODE((tmp_path / "secrets.db").stat().st_mode) == 0o600


def test_btree_texthash_and_default_type(tmp_path):
    src = tmp_path / "t"
    src.write_text(SOURCE)
    assert postmap(tmp_path, f"btree:{src}").returncode == 0
    kind = subprocess.run(["file", "-b", str(tmp_path / "t.db")], capture_output=True, text=True, timeout=TIMEOUT)
    assert "Btree" in kind.stdout
    assert postmap(tmp_path, "-q", "postmaster", f"btree:{src}").stdout == "root\n"
    # default_database_type decides when no type is given.
    (tmp_path / "main.cf").write_text("default_database_type = btree\n")
    assert postmap(tmp_path, "-q", "postmaster", src).stdout == "root\n"
    # texthash: reads the text itself; no .db needed.
    other = tmp_path / "plain"
    other.write_text(SOURCE)
    proc = postmap(tmp_path, "-q", "SALES@example.com", f"texthash:{other}")
    assert (proc.returncode, proc.stdout) == (0, ENTRIES["sales@example.com"] + "\n")
    assert not (tmp_path / "plain.db").exists()
    # Inline tables answer too (handy to test a main.cf value).
    proc = postmap(tmp_path, "-q", "B", "inline:{a=1, {b = two words}}")
    assert (proc.returncode, proc.stdout) == (0, "two words\n")


ALIASES = """\
# system aliases
root: admin@example.com, "|/usr/bin/procmail -t"
"mail list": /var/mail/archive,
    :include:/etc/postern/list.members
MAILER-DAEMON: postmaster
postmaster:root
"""
ALIAS_ENTRIES = {
    "root": 'admin@example.com, "|/usr/bin/procmail -t"',
    "mail list": "/var/mail/archive, :include:/etc/postern/list.members",
    "mailer-daemon": "postmaster",
    "postmaster": "root",
}


def test_aliases(tmp_path):
    src = tmp_path / "aliases"
    src.write_text(ALIASES)
    proc = postmap(tmp_path, "-a", src)
    assert proc.returncode == 0, proc.stderr
    for key, value in ALIAS_ENTRIES.items():
        proc = postmap(tmp_path, "-a", "-q", key, src)
        assert (proc.returncode, proc.stdout) == (0, value + "\n")
    dump = postmap(tmp_path, "-a", "-s", src).stdout.splitlines()
    assert sorted(dump) == sorted(
        (f'"{k}"' if " " in k else k) + ": " + v for k, v in ALIAS_ENTRIES.items()
    )
    # The dump is itself a valid aliases file.
    again = tmp_path / "again"
    again.write_text("\n".join(dump) + "\n")
    assert postmap(tmp_path, "-a", again).returncode == 0
    assert postmap(tmp_path, "-a", "-q", "mail list", again).stdout == ALIAS_ENTRIES["mail list"] + "\n"
    # Aliases syntax errors name file:line and leave the table alone.
    before = (tmp_path / "aliases.db").read_bytes()
    src.write_text("root: admin\nno colon here\n")
    proc = postmap(tmp_path, "-a", src)
    assert proc.returncode == 1
    assert f"{src}:2:" in proc.stderr
    assert (tmp_path / "aliases.db").read_bytes() == before
    # texthash: with -a parses the aliases syntax from the text.
    src.write_text(ALIASES)
    proc = postmap(tmp_path, "-a", "-q", "Mailer-Daemon", f"texthash:{src}")
    assert (proc.returncode, proc.stdout) == (0, "postmaster\n")


def test_aliases_default_database(tmp_path):
    src = tmp_path / "aliases"
    src.write_text(ALIASES)
    (tmp_path / "main.cf").write_text(f"alias_database = hash:{src}\n")
    proc = postmap(tmp_path, "-a")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "aliases.db").exists()
    proc = postmap(tmp_path, "-a", "-q", "postmaster")
    assert (proc.returncode, proc.stdout) == (0, "root\n")
    assert postmap(tmp_path, "-a", "-q", "nobody").returncode == 1


HASH_RE = {
    "yescrypt": re.compile(r"\$y\$[./0-9A-Za-z]+\$[./0-9A-Za-z]+\$[./0-9A-Za-z]{43}"),
    "sha512": re.compile(r"\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}"),
    "bcrypt": re.compile(r"\$2b\$\d\d\$[./0-9A-Za-z]{53}"),
}


@pytest.mark.parametrize("method", ["yescrypt", "sha512", "bcrypt"])
def test_hash_password(method):
    args = ["hash-password"] if method == "yescrypt" else ["hash-password", "-m", method]
    proc = run(*args, input="correct horse\n")
    assert proc.returncode == 0, proc.stderr
    hashed = proc.stdout.rstrip("\n")
    assert proc.stdout.endswith("\n") and "\n" not in hashed
    assert HASH_RE[method].fullmatch(hashed), hashed
    # A fresh salt every time.
    assert run(*args, input="correct horse\n").stdout.rstrip("\n") != hashed
    if crypt is not None:
        assert crypt.crypt("correct horse", hashed) == hashed
        assert crypt.crypt("correct horsf", hashed) != hashed
    # CRLF line ends are not part of the password.
    if crypt is not None:
        crlf = run(*args, input="correct horse\r\n").stdout.rstrip("\n")
        assert crypt.crypt("correct horse", crlf) == crlf


def test_hash_password_refusals():
    for text in ("", "\n", "\r\n", "x" * 1100 + "\n", "x" * 600 + "\n"):
        proc = run("hash-password", input=text)
        assert proc.returncode == 1, text[:10]
        assert proc.stdout == ""
        assert proc.stderr.startswith("postern: hash-password: ")
    proc = run("hash-password", "-m", "md5", input="x\n")
    assert proc.returncode == 2
    proc = run("hash-password", "extra-argument", input="x\n")
    assert proc.returncode == 2


def test_hash_password_on_a_terminal_does_not_echo():
    if not POSTERN.exists():
        pytest.skip(f"{POSTERN} not built")
    pid, fd = pty.fork()
    if pid == 0:  # child: postern on the terminal
        os.execv(str(POSTERN), [str(POSTERN), "hash-password"])
    seen = b""

    def read_for(seconds, until=None):
        nonlocal seen
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in seen):
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the child closed the terminal
                    return
                if not chunk:
                    return
                seen += chunk

    try:
        read_for(TIMEOUT, b"Password: ")
        os.write(fd, b"terminal secret\n")
        read_for(TIMEOUT, b"$y$")
        read_for(2)
    finally:
        deadline = time.monotonic() + TIMEOUT
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if not done:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    assert done and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (done, status, seen)
    text = seen.decode()
    assert text.startswith("Password: ")
    assert "terminal secret" not in text
    hashed = text.split()[-1]
    assert HASH_RE["yescrypt"].fullmatch(hashed), text
    if crypt is not None:
        assert crypt.crypt("terminal secret", hashed) == hashed

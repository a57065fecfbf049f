"""sendmail as programs call it, on a 'postern init' instance that delivers
with qmgr and local into the demo user's Maildir.

What is checked is what the caller and the mail user see: sendmail's exit
status (sysexits), the bytes that arrive, the log.  The first part runs
sendmail as the test runs (root in CI): plain pipes, -t, -bs, s-nail, git
send-email, a cron-like call with an empty environment and no terminal.

The second part is a normal user on a root-installed system: the user
`nobody` runs a copy of the built sendmail next to a copy of postdrop that
is set-group-id setgid_group, as "postern setup" makes it.  A set-gid
postdrop takes no configuration from its caller, so the instance's
directory is authorised the way Postfix does it: alternate_config_directories
in the default main.cf.  That file is written only when the compiled-in
configuration directory has none, and removed afterwards; otherwise those
tests are skipped, so a developer's own configuration is never touched.
"""
import email
import email.policy
import grp
import json
import os
import pathlib
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from instance import run, wait_for

DEMO = "demo@example.test"
ROOT = os.geteuid() == 0


# ---------------------------------------------------------------- helpers


@pytest.fixture
def live(inst):
    inst.conf(queue_run_delay="2s")
    inst.start()
    wait_for(lambda: (inst.dir / "queue" / "public" / "pickup").exists(), 10, what="public/pickup")
    yield inst


def sendmail_path(inst):
    return str(inst.build / "cli" / "sendmail")


def env_for(inst, **extra):
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}
    env["POSTERN_CONFIG_DIR"] = str(inst.dir)
    env.update(extra)
    return env


def sendmail(inst, *args, input=b"", env=None, path=None, preexec=None, cwd=None, timeout=60):
    proc = subprocess.run([path or sendmail_path(inst), *args], input=input, capture_output=True,
                          env=env if env is not None else env_for(inst), timeout=timeout, preexec_fn=preexec,
                          cwd=cwd)
    return proc


def inbox(inst):
    d = inst.dir / "mail" / "example.test" / "demo" / "new"
    return sorted(d.iterdir()) if d.exists() else []


def wait_mail(inst, n, timeout=30):
    return wait_for(lambda: len(inbox(inst)) >= n and inbox(inst), timeout, what=f"{n} messages in demo's Maildir")


def parse(path):
    return email.message_from_bytes(pathlib.Path(path).read_bytes(), policy=email.policy.default)


def by_subject(inst, subject, timeout=30):
    """The delivered message with this subject."""
    def find():
        for p in inbox(inst):
            if parse(p)["Subject"] == subject:
                return p
        return None
    return wait_for(find, timeout, what=f"a message with Subject: {subject}")


def body_of(path):
    data = pathlib.Path(path).read_bytes()
    return data.split(b"\n\n", 1)[1]


# ---------------------------------------------------------------- as programs call it


def test_pipe_with_t_removes_bcc(live):
    msg = b"To: Demo <demo@example.test>\nBcc: demo@example.test\nSubject: dash t\n\nbody line\n"
    proc = sendmail(live, "-t", input=msg)
    assert proc.returncode == 0, proc.stderr
    files = wait_mail(live, 1)
    time.sleep(1)
    assert len(inbox(live)) == 1  # one recipient, twice in the header: one copy
    for f in files:
        m = parse(f)
        assert m["Subject"] == "dash t"
        assert m["Bcc"] is None
        assert body_of(f) == b"body line\n"
        assert m["Received"] and "from userid 0" in str(m["Received"]).replace("\n", " ")
        assert m["Message-ID"] and m["Date"] and m["From"]


def test_recipient_argument_crlf_and_from_line(live):
    msg = b"From someone Sat Jan  1 00:00:00 2000\r\nSubject: crlf\r\n\r\nline one\r\n.\r\nafter the dot\r\nno final newline"
    # Without -i a lone dot ends the message, as sendmail does.
    proc = sendmail(live, DEMO, input=msg)
    assert proc.returncode == 0, proc.stderr
    f = by_subject(live, "crlf")
    assert body_of(f) == b"line one\n"
    assert b"From someone" not in pathlib.Path(f).read_bytes()
    proc = sendmail(live, "-oi", DEMO, input=msg.replace(b"Subject: crlf", b"Subject: with i"))
    assert proc.returncode == 0, proc.stderr
    f = by_subject(live, "with i")
    assert body_of(f) == b"line one\n.\nafter the dot\nno final newline\n"


def test_exit_codes(live):
    # No recipient: usage (64), nothing queued.
    proc = sendmail(live, input=b"Subject: nobody\n\nx\n")
    assert proc.returncode == 64 and b"no recipients" in proc.stderr
    proc = sendmail(live, "-t", input=b"Subject: nobody\n\nx\n")
    assert proc.returncode == 64
    # Daemon mode is not sendmail's job here.
    assert sendmail(live, "-bd").returncode == 64
    # Legacy options are accepted and ignored.
    proc = sendmail(live, "-oem", "-om", "-o7", "-U", "-v", "-X", "/dev/null", DEMO,
                    input=b"Subject: legacy\n\nx\n")
    assert proc.returncode == 0, proc.stderr
    by_subject(live, "legacy")
    proc = sendmail(live, "-bv", DEMO)
    assert proc.returncode == 0 and b"deliverable" in proc.stdout


def test_sender_and_dsn_options(live):
    proc = sendmail(live, "-f", "list-bounces@example.org", "-F", "List Robot", "-N", "failure,delay",
                    "-R", "hdrs", "-V", "env42", "-B", "8BITMIME", DEMO,
                    input="Subject: options\n\ncaf\u00e9\n".encode())
    assert proc.returncode == 0, proc.stderr
    f = by_subject(live, "options")
    assert parse(f)["Return-Path"] == "<list-bounces@example.org>"
    assert body_of(f) == "caf\u00e9\n".encode()
    assert re.search(r"from=<list-bounces@example\.org>", live.log())


def test_smtp_on_stdin(live):
    script = (b"EHLO client.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<demo@example.test>\r\n"
              b"DATA\r\nSubject: bs\r\n\r\n..dot stuffed\r\n.\r\nQUIT\r\n")
    proc = sendmail(live, "-bs", input=script)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert out.startswith("220 ")
    assert "250 2.0.0 Ok: queued" in out and "221 2.0.0 Bye" in out
    f = by_subject(live, "bs")
    assert body_of(f) == b".dot stuffed\n"


@pytest.mark.skipif(shutil.which("s-nail") is None, reason="s-nail is not installed (tools/deps)")
def test_s_nail(live, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = env_for(live, HOME=str(home), LC_ALL="C.UTF-8")
    proc = subprocess.run(["s-nail", "-n", "-S", f"mta={sendmail_path(live)}", "-S", "sendwait",
                           "-s", "from s-nail", DEMO], input=b"hello from mail(1)\n", capture_output=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    f = by_subject(live, "from s-nail")
    assert b"hello from mail(1)" in body_of(f)


def test_git_send_email(live, tmp_path):
    try:
        ok = subprocess.run(["git", "send-email", "--help"], capture_output=True, timeout=30,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MANPAGER": "cat",
                                 "GIT_PAGER": "cat", "PAGER": "cat"}).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip("git send-email is not installed (Debian package git-email)")
    repo = tmp_path / "repo"
    env = env_for(live, HOME=str(tmp_path), GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="dev@example.org",
                  GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="dev@example.org")
    run(["git", "init", "-q", repo], check=True, env=env)
    (repo / "file.txt").write_text("content\n")
    run(["git", "-C", repo, "add", "file.txt"], check=True, env=env)
    run(["git", "-C", repo, "commit", "-q", "-m", "A patch for the list"], check=True, env=env)
    run(["git", "-C", repo, "format-patch", "-q", "-1", "-o", tmp_path / "out"], check=True, env=env)
    [patch] = list((tmp_path / "out").iterdir())
    proc = run(["git", "-C", repo, "send-email", f"--sendmail-cmd={sendmail_path(live)}", "--to", DEMO,
                "--from", "Dev <dev@example.org>", "--confirm=never", "--no-validate", "--quiet", patch],
               env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    f = by_subject(live, "[PATCH] A patch for the list")
    assert b"+content" in body_of(f)


def test_cron_like_call(live):
    # What cron does: an empty environment but for a few names, no
    # terminal (a new session), the body on a pipe.
    env = {"POSTERN_CONFIG_DIR": str(live.dir), "LOGNAME": "root", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    proc = subprocess.run([sendmail_path(live), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", DEMO],
                          input=b"From: root (Cron Daemon)\nTo: demo@example.test\nSubject: Cron <root@host> job\n"
                                b"\nthe job's output\n",
                          capture_output=True, env=env, start_new_session=True, cwd="/", timeout=60)
    assert proc.returncode == 0, proc.stderr
    f = by_subject(live, "Cron <root@host> job")
    assert body_of(f) == b"the job's output\n"


def test_mailq_and_newaliases_names(live, tmp_path):
    link_dir = tmp_path / "bin"
    link_dir.mkdir()
    for name in ("mailq", "newaliases"):
        os.symlink(sendmail_path(live), link_dir / name)
    # Programs next to sendmail are found through /proc/self/exe: the links work from anywhere.
    proc = sendmail(live, path=str(link_dir / "mailq"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "Mail queue is empty"
    (live.dir / "aliases").write_text("postmaster: demo@example.test\nabuse: demo@example.test\n")
    proc = sendmail(live, path=str(link_dir / "newaliases"))
    assert proc.returncode == 0, proc.stderr
    proc = live.cmd("map", "-q", "abuse", f"hash:{live.dir}/aliases")
    assert proc.returncode == 0 and "demo@example.test" in proc.stdout


# ---------------------------------------------------------------- a normal user


def default_config_dir(postern):
    env = {k: v for k, v in os.environ.items() if k != "POSTERN_CONFIG_DIR"}
    out = run([postern, "conf", "-d", "-h", "config_directory"], env=env, check=True).stdout.strip()
    return pathlib.Path(out)


@pytest.fixture(scope="module")
def default_main_cf(postern):
    """The compiled-in main.cf, ours to write for this module, or a skip."""
    if not ROOT:
        pytest.skip("needs root (setpriv, a set-group-id copy of postdrop)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    cfdir = default_config_dir(postern)
    cf = cfdir / "main.cf"
    if cf.exists() or cf.is_symlink():
        pytest.skip(f"{cf} exists; not touching a real configuration")
    made = []
    p = cfdir
    while not p.exists():
        made.append(p)
        p = p.parent
    for d in reversed(made):
        d.mkdir(mode=0o755)
    try:
        yield cf
    finally:
        cf.unlink(missing_ok=True)
        for d in made:
            try:
                d.rmdir()
            except OSError:
                pass


@pytest.fixture
def user_live(live, default_main_cf):
    """live, plus a set-gid copy of postdrop beside a copy of sendmail, usable by nobody."""
    default_main_cf.write_text(f"# written by Postern's test_sendmail.py; removed after the tests\n"
                               f"alternate_config_directories = {live.dir}\n")
    bindir = pathlib.Path(tempfile.mkdtemp(prefix="postern-bin-", dir="/tmp"))
    os.chmod(bindir, 0o755)
    for name in ("sendmail", "postdrop"):
        shutil.copy2(live.build / "cli" / name, bindir / name)
    group = run([live.postern, "-c", live.dir, "conf", "-h", "setgid_group"], check=True).stdout.strip()
    os.chown(bindir / "postdrop", 0, grp.getgrnam(group).gr_gid)
    os.chmod(bindir / "postdrop", 0o2755)
    live.user_bin = bindir
    # The instance and its parents must be reachable by nobody (they are 0755 from conftest).
    yield live
    default_main_cf.write_text("")
    shutil.rmtree(bindir, ignore_errors=True)


def as_nobody():
    pw = pwd.getpwnam("nobody")

    def drop():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return drop


def user_sendmail(inst, *args, input=b"", env=None, cwd="/"):
    return sendmail(inst, *args, input=input, env=env if env is not None else env_for(inst),
                    path=str(inst.user_bin / "sendmail"), preexec=as_nobody(), cwd=cwd)


def test_user_submits_and_lists(user_live):
    inst = user_live
    nobody = pwd.getpwnam("nobody").pw_uid
    proc = user_sendmail(inst, DEMO, input=b"Subject: from nobody\n\nhi\n")
    assert proc.returncode == 0, proc.stderr
    f = by_subject(inst, "from nobody")
    m = parse(f)
    assert f"from userid {nobody}" in str(m["Received"]).replace("\n", " ")
    assert m["Return-Path"] == "<nobody@mail.example.test>"
    assert re.search(rf"[0-9A-V]{{16}}: uid={nobody} from=<nobody>", inst.log())
    # A sender of their own choosing is marked, as Postfix does.
    proc = user_sendmail(inst, "-f", "ceo@example.org", DEMO, input=b"Subject: forged\n\nx\n")
    assert proc.returncode == 0, proc.stderr
    f = by_subject(inst, "forged")
    assert "nobody set sender to ceo@example.org using -f" in parse(f)["X-Authentication-Warning"]

    # mailq works for nobody through showq and shows envelopes of other users' mail.
    inst.conf(transport_maps="inline:{nowhere.example=nosuch:}")
    inst.reload()
    time.sleep(1.5)
    proc = sendmail(inst, "-f", "root@mail.example.test", "someone@nowhere.example",
                    input=b"Subject: secret\n\nthe secret body\n")
    assert proc.returncode == 0, proc.stderr

    def deferred():
        p = user_sendmail(inst, "-bp")
        return p.returncode == 0 and "someone@nowhere.example" in p.stdout.decode() and p
    proc = wait_for(deferred, 30, what="the deferred message in nobody's mailq")
    text = proc.stdout.decode()
    assert text.startswith("-Queue ID-")
    assert re.search(r"^[0-9A-V]{16}[ *!]\s+\d+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d\s+root@mail\.example\.test$",
                     text, re.M), text
    assert re.search(r"^\s+\(.*nosuch.*\)$", text, re.M), text
    assert re.search(r"^\s{40,}someone@nowhere\.example$", text, re.M), text
    assert re.search(r"^-- \d+ Kbytes in 1 Request\.$", text, re.M), text
    assert "the secret body" not in text
    qid = re.search(r"^([0-9A-V]{16})", text, re.M).group(1)
    # The same as JSON, through postdrop -p -j.
    pd = subprocess.run([str(inst.user_bin / "postdrop"), "-c", str(inst.dir), "-p", "-j"], capture_output=True,
                        preexec_fn=as_nobody(), env=env_for(inst), timeout=60, cwd="/")
    assert pd.returncode == 0, pd.stderr
    [msg] = [json.loads(line) for line in pd.stdout.decode().splitlines()]
    assert msg["queue_id"] == qid and msg["sender"] == "root@mail.example.test"
    assert msg["recipients"][0]["address"] == "someone@nowhere.example"
    assert "nosuch" in msg["recipients"][0]["delay_reason"]
    # postern cat is for root and the mail_owner only.
    cat = subprocess.run([inst.postern, "-c", str(inst.dir), "cat", qid], capture_output=True,
                         preexec_fn=as_nobody(), timeout=60, cwd="/")
    assert cat.returncode != 0
    assert b"the secret body" not in cat.stdout
    assert b"run as root or as the mail_owner" in cat.stderr or b"Permission denied" in cat.stderr


@pytest.mark.skipif(shutil.which("s-nail") is None, reason="s-nail is not installed (tools/deps)")
def test_user_s_nail(user_live):
    # The "done when": mail(1) run by a normal user reaches the mailbox.
    inst = user_live
    home = pathlib.Path(tempfile.mkdtemp(prefix="postern-home-", dir="/tmp"))
    try:
        os.chown(home, pwd.getpwnam("nobody").pw_uid, -1)
        env = env_for(inst, HOME=str(home), LC_ALL="C.UTF-8", USER="nobody", LOGNAME="nobody")
        proc = subprocess.run(["s-nail", "-n", "-S", f"mta={inst.user_bin / 'sendmail'}", "-S", "sendwait",
                               "-s", "test", DEMO], input=b"hi\n", capture_output=True, env=env,
                              preexec_fn=as_nobody(), cwd="/", timeout=60)
        assert proc.returncode == 0, proc.stderr
        f = by_subject(inst, "test")
        assert body_of(f).strip() == b"hi"
        assert parse(f)["Return-Path"] == "<nobody@mail.example.test>"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_user_cannot_choose_a_configuration(user_live, tmp_path):
    inst = user_live
    evil = pathlib.Path("/tmp/evil.cf")
    proc = user_sendmail(inst, "-C", str(evil), DEMO, input=b"Subject: evil\n\nx\n")
    assert proc.returncode == 77, proc.stderr
    # A directory not listed in alternate_config_directories: postdrop refuses it.
    other = pathlib.Path(tempfile.mkdtemp(prefix="postern-evil-", dir="/tmp"))
    try:
        os.chmod(other, 0o755)
        (other / "main.cf").write_text(f"queue_directory = {inst.dir}/queue\n")
        proc = user_sendmail(inst, DEMO, input=b"Subject: evil dir\n\nx\n", env=env_for(inst, POSTERN_CONFIG_DIR=str(other)))
        assert proc.returncode == 77, proc.stderr
        assert b"alternate_config_directories" in proc.stderr
        pd = subprocess.run([str(inst.user_bin / "postdrop"), "-c", str(other), "-p"], capture_output=True,
                            preexec_fn=as_nobody(), timeout=60, cwd="/")
        assert pd.returncode == 77
    finally:
        shutil.rmtree(other, ignore_errors=True)
    time.sleep(1)
    assert not any(parse(p)["Subject"] in ("evil", "evil dir") for p in inbox(inst))


def test_hostile_environment_has_no_effect(user_live):
    inst = user_live
    work = pathlib.Path(tempfile.mkdtemp(prefix="postern-cwd-", dir="/tmp"))
    try:
        os.chmod(work, 0o755)
        # Berkeley DB would read DB_CONFIG from a home directory it is given; nothing here may use this one.
        (work / "DB_CONFIG").write_text("set_data_dir /etc\nset_lg_dir /etc\nset_tmp_dir /etc\nset_cachesize 9 0 1\n")
        env = env_for(inst, TZ="/etc/shadow", TMPDIR="/nonexistent", LD_PRELOAD="/nonexistent.so",
                      LD_LIBRARY_PATH="/nonexistent", MALLOC_CHECK_="3", HOME="/nonexistent", IFS="x")
        body = b"Subject: hostile env\n\nline 1\nline 2\n"
        proc = user_sendmail(inst, DEMO, input=body, env=env, cwd=str(work))
        assert proc.returncode == 0, proc.stderr
        # The only words allowed on stderr are the dynamic loader's about the preload it skips.
        for line in proc.stderr.decode().splitlines():
            assert "LD_PRELOAD" in line, proc.stderr
        f = by_subject(inst, "hostile env")
        assert body_of(f) == b"line 1\nline 2\n"
        assert (work / "DB_CONFIG").read_text().startswith("set_data_dir")
        assert sorted(os.listdir(work)) == ["DB_CONFIG"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_maildrop_garbage_goes_to_corrupt(live):
    maildrop = live.dir / "queue" / "maildrop"
    corrupt = live.dir / "queue" / "corrupt"
    before = set(os.listdir(corrupt))
    ids = ["1LG5AAAAAA000001", "1LG5AAAAAA000002", "1LG5AAAAAA000003", "1LG5AAAAAA000004"]
    (maildrop / "garbage name!").write_bytes(b"not a queue file\n")
    (maildrop / ids[0]).write_bytes(b"\x00\xff" * 100)
    os.chmod(maildrop / ids[0], 0o744)  # looks complete, is garbage
    (maildrop / ids[1]).write_bytes(b"V\x05hello")
    os.chmod(maildrop / ids[1], 0o744)  # a truncated record
    os.symlink("/etc/passwd", maildrop / ids[2])
    (maildrop / ids[3]).write_bytes(b"V")
    os.chmod(maildrop / ids[3], 0o600)  # a postdrop that died two hours ago
    old = time.time() - 7200
    os.utime(maildrop / ids[3], (old, old))
    if ROOT:
        os.lchown(maildrop / ids[3], pwd.getpwnam("nobody").pw_uid, -1)
    # A real submission wakes pickup, and still arrives.
    proc = sendmail(live, DEMO, input=b"Subject: after garbage\n\nfine\n")
    assert proc.returncode == 0, proc.stderr
    by_subject(live, "after garbage")
    wait_for(lambda: os.listdir(maildrop) == [], 30, what="an empty maildrop")
    added = set(os.listdir(corrupt)) - before
    assert len(added) == 5, added
    for name in added:
        assert re.fullmatch(r"[0-9A-V]{16}", name)
    log = live.log()
    assert "maildrop/garbage name!: not a queue ID; moved to corrupt/" in log
    assert f"maildrop/{ids[2]}: a symbolic link; moved to corrupt/{ids[2]}" in log
    assert f"maildrop/{ids[3]}: " in log
    assert (corrupt / ids[2]).is_symlink()
    # pickup is the same process, alive and well, after all that.
    assert not re.search(r"pickup\[\d+\]: (fatal|panic)", log), log
    assert "signal" not in "\n".join(line for line in log.splitlines() if "pickup" in line and "master" in line)

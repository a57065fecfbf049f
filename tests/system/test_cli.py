"""The postern command as an admin uses it: version and configuration."""
import re

from instance import run


def test_version(postern):
    out = run([postern, "version"], check=True).stdout
    assert re.fullmatch(r"postern \d+\.\d+\.\d+\n", out)


def test_unknown_command_fails(postern):
    proc = run([postern, "no-such-command"])
    assert proc.returncode == 2
    assert "unknown command" in proc.stderr


def test_conf_defaults_list_every_parameter(postern, tmp_path):
    table = run([postern, "-c", tmp_path, "conf", "-D"], check=True).stdout.splitlines()
    names = [line.split("\t")[0] for line in table]
    assert len(names) > 40 and len(set(names)) == len(names)
    defaults = run([postern, "-c", tmp_path, "conf", "-d"], check=True).stdout.splitlines()
    assert [line.split(" = ")[0] for line in defaults] == sorted(names)
    values = dict(line.split(" = ", 1) if " = " in line else (line.rstrip(" ="), "") for line in defaults)
    assert values["message_size_limit"] == "10240000"
    assert values["maximal_queue_lifetime"] == "5d"
    assert values["myhostname"] != ""


def test_conf_edit_roundtrip(postern, tmp_path):
    (tmp_path / "main.cf").write_text(
        "# comment kept\nmyhostname = old.example\n    continued\nmessage_size_limit = 1000\n"
    )
    run([postern, "-c", tmp_path, "conf", "-e", "myhostname=mx.example.net",
         "relayhost = [smart.example]:587"], check=True)
    text = (tmp_path / "main.cf").read_text()
    assert text.startswith("# comment kept\n")
    assert "continued" not in text
    assert "myhostname = mx.example.net\n" in text
    assert "message_size_limit = 1000\n" in text
    assert "relayhost = [smart.example]:587\n" in text
    out = run([postern, "-c", tmp_path, "conf", "-n"], check=True).stdout
    assert "myhostname = mx.example.net" in out
    assert "mydestination" not in out
    out = run([postern, "-c", tmp_path, "conf", "-x", "mydestination"], check=True).stdout
    assert out == "mydestination = mx.example.net, localhost.example.net, localhost\n"


def test_conf_reports_errors_with_file_and_line(postern, tmp_path):
    (tmp_path / "main.cf").write_text("myhostname = a.example\nthis line has no equals sign\n")
    proc = run([postern, "-c", tmp_path, "conf", "myhostname"])
    assert proc.returncode != 0
    assert f"{tmp_path}/main.cf:2" in proc.stderr


def test_conf_unknown_name(postern, tmp_path):
    proc = run([postern, "-c", tmp_path, "conf", "no_such_parameter"])
    assert proc.returncode == 1
    assert "no_such_parameter" in proc.stderr

"""Shared fixtures for Postern's system tests.

The tests run real Postern programs from a build tree: $POSTERN_BUILD
(tools/test sets it) or ./build next to the source tree.
"""
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import instance  # noqa: E402


@pytest.fixture(scope="session")
def build_dir():
    return instance.build_dir()


@pytest.fixture(scope="session")
def postern(build_dir):
    """Path of the built postern command."""
    path = pathlib.Path(build_dir) / "cli" / "postern"
    if not path.exists():
        pytest.skip(f"{path} not built")
    return str(path)


@pytest.fixture
def inst(tmp_path, postern):
    """A fresh instance (made by postern init); stopped and cleaned up after the test."""
    if os.geteuid() == 0:
        # Root instances drop to system users, who must be able to reach
        # the instance; pytest's own temp dirs are private to root.
        base = pathlib.Path(tempfile.mkdtemp(prefix="postern-test-", dir="/tmp"))
        os.chmod(base, 0o755)
        path = base / "inst"
    else:
        base = None
        path = tmp_path / "inst"
    i = instance.Instance(path, postern).init()
    yield i
    i.cleanup()
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)

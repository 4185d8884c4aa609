"""The Blender pass's sandbox: what a command started through it can and cannot reach (no Blender needed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from trellis2_worker.ingest.sandbox import describe, landlock_abi

SRC = Path(__file__).resolve().parents[1] / "src"

_PROBE = """
import json, os, socket, sys
asset, work, secret, port = sys.argv[1:5]
def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError:
        return "denied"
def connect():
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5):
        pass
print(json.dumps({
    "read asset": attempt(lambda: open(asset).read()),
    "write asset folder": attempt(lambda: open(asset + ".new", "w").write("x")),
    "write work": attempt(lambda: open(os.path.join(work, "out.txt"), "w").write("x")),
    "read outside": attempt(lambda: open(secret).read()),
    "list outside": attempt(lambda: os.listdir(os.path.dirname(secret))),
    "parent environ": attempt(lambda: open(f"/proc/{os.getppid()}/environ", "rb").read()),
    "own status": attempt(lambda: open("/proc/self/status").read()),
    "connect": attempt(connect),
    "sandbox": json.loads(os.environ["TRELLIS2_SANDBOX"]),
}))
"""


def test_a_sandboxed_command_reads_its_folder_writes_its_work_and_nothing_else(tmp_path):
    asset_dir, work, outside = tmp_path / "archive", tmp_path / "work", tmp_path / "outside"
    for d in (asset_dir, work, outside):
        d.mkdir()
    (asset_dir / "a.obj").write_text("v 0 0 0\n")
    (outside / "secret.txt").write_text("secret")
    (tmp_path / "probe.py").write_text(_PROBE)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        cmd = [sys.executable, str(SRC / "trellis2_worker/ingest/sandbox.py"), "--read", str(asset_dir),
               "--read", str(tmp_path / "probe.py"), "--write", str(work), "--", sys.executable,
               str(tmp_path / "probe.py"), str(asset_dir / "a.obj"), str(work), str(outside / "secret.txt"),
               str(server.getsockname()[1])]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PYTHONPATH=str(SRC)))
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    applied = seen.pop("sandbox")
    assert done.stderr.startswith(f"sandbox: {applied['summary']}")
    assert seen["read asset"] == "allowed" and seen["write work"] == "allowed"
    if landlock_abi() >= 1:
        assert applied["filesystem"] and applied["summary"].startswith(f"filesystem: Landlock ABI {landlock_abi()}")
        assert seen["read outside"] == seen["list outside"] == seen["write asset folder"] == "denied"
        assert seen["parent environ"] == "denied" and seen["own status"] == "allowed"
    else:
        assert applied["summary"].startswith("filesystem: none")
    if applied.get("tcp") or applied.get("netns"):
        assert seen["connect"] == "denied"
    else:
        assert "network: none" in applied["summary"]


def test_the_report_line_says_what_was_missing():
    full = {"landlock_abi": 7, "filesystem": True, "tcp": True, "netns": "network namespace", "kernel": "6.8"}
    assert describe(full) == "filesystem: Landlock ABI 7; network: Landlock TCP + network namespace"
    old = {"landlock_abi": 2, "filesystem": True, "tcp": False, "netns": None, "kernel": "6.1"}
    assert describe(old) == "filesystem: Landlock ABI 2; network: none (kernel 6.1 offers no more)"
    assert describe({"landlock_abi": 0, "kernel": "5.4"}).startswith("filesystem: none; network: none")


def test_the_blender_pass_gets_no_credentials_and_its_own_home(tmp_path):
    from trellis2_worker.ingest.pipeline import _pass_env

    env = _pass_env(tmp_path)
    os.environ["AWS_SECRET_ACCESS_KEY"] = "x"
    try:
        assert "AWS_SECRET_ACCESS_KEY" not in _pass_env(tmp_path)
    finally:
        del os.environ["AWS_SECRET_ACCESS_KEY"]
    assert env["HOME"] == env["TMPDIR"] == str(tmp_path)

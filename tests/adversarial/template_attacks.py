"""Hostile submissions aimed at the warm kernel template (issue 21), graded one after another by one worker, so
each kernel is forked from the same template as the one before it.

- `a-leaver` leaves what it can for the next student: files in every place it can write, a System V shared
  memory segment, a daemon in a new session that listens on loopback and on an abstract unix socket and keeps
  writing into the worker's fixed work folder, a mark in an imported module's state;
- `b-reader` looks for what it inherited from the template: open descriptors, the memory, environment and
  descriptors of the other processes it can see, the template's control socket (directly and through /proc);
- `c-killer` tries to kill, stop, trace and write into every other process it can see (the template is not even
  visible: each kernel has a PID namespace of its own, whose pid 1 is root), then kills every process it may
  (`kill(-1)`), its own kernel included;
- `d-probe` is honest and comes last: it looks for everything the others left and prints what it found.

Each attack prints what it managed (the test checks the leaver really wrote and started its daemon, so that the
probe finding nothing proves containment, not a failed attack). The answers are the reference's otherwise.
"""

from __future__ import annotations

MARK = "warm-leftover-7f3a"
PORT = 47311
SHM_KEY = 0x7F3A
PLACES = ["/tmp", "/var/tmp", "~", ".", "/dev/shm", "/var", "/run", "/", "/opt/course", "/run/grader-control"]

LEAVER = f'''import ctypes, os, socket, subprocess, sys, time, torch
_left = []
for _where in {PLACES!r}:
    try:
        with open(os.path.join(os.path.expanduser(_where), "leftover.txt"), "w") as _fh:
            _fh.write({MARK!r})
        _left.append(_where)
    except OSError:
        pass
_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmat.restype = ctypes.c_void_p
_shm = _libc.shmget({SHM_KEY}, 4096, 0o1666)
if _shm >= 0:
    ctypes.memmove(_libc.shmat(_shm, None, 0), {MARK!r}.encode(), {len(MARK)})
    _left.append("shm")
torch._warm_mark = {MARK!r}
_daemon = """
import os, socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {PORT})); s.listen(5)
a = socket.socket(socket.AF_UNIX); a.bind("\\\\0warm-leak-7f3a"); a.listen(5)
while True:
    for d in (%r, "/tmp", "/var/tmp"):
        try:
            open(os.path.join(d, "injected.txt"), "w").write({MARK!r})
        except OSError:
            pass
    time.sleep(0.05)
""" % os.getcwd()
subprocess.Popen([sys.executable, "-c", _daemon], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1.0)
try:
    socket.create_connection(("127.0.0.1", {PORT}), timeout=2).close()
    _left.append("daemon")
except OSError:
    pass
print("left:", _left)
'''

READER = """import os, socket
_fds = {}
for _fd in os.listdir("/proc/self/fd"):
    try:
        _fds[_fd] = os.readlink(f"/proc/self/fd/{_fd}")
    except OSError:
        pass
_reached = []
for _pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    for _what in ("mem", "environ", "maps", "fd", "cwd", "root/run/grader-control"):
        _path = f"/proc/{_pid}/{_what}"
        try:
            if os.path.isdir(_path):
                os.listdir(_path)
            else:
                with open(_path, "rb") as _fh:
                    _fh.read(64)
            _reached.append(f"{_pid}/{_what}")
        except OSError:
            pass
for _path in ("/run/grader-control/template.sock", "/proc/1/root/run/grader-control/template.sock",
              "/proc/2/root/run/grader-control/template.sock"):
    try:
        _s = socket.socket(socket.AF_UNIX)
        _s.connect(_path)
        _reached.append("connected " + _path)
    except OSError:
        pass
for _folder in ("/run/grader-control", "/run/grader-cgroups"):
    try:
        if os.listdir(_folder):
            _reached.append("listed " + _folder)
    except OSError:
        pass
print("inherited fds:", sorted(_fds.values()))
print("template reached:", _reached)
"""

KILLER = """import ctypes, os, signal
_done = []
_libc = ctypes.CDLL(None, use_errno=True)
for _pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
    for _sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(_pid, _sig)
            _done.append(f"signal {_sig} to {_pid}")
        except OSError:
            pass
    if _libc.ptrace(16, _pid, 0, 0) == 0:  # PTRACE_ATTACH
        _done.append(f"traced {_pid}")
    try:
        with open(f"/proc/{_pid}/mem", "wb"):
            _done.append(f"opened the memory of {_pid}")
    except OSError:
        pass
print("visible:", sorted(p for p in os.listdir("/proc") if p.isdigit()), "me:", os.getpid())
print("template harmed:", _done)
"""
KILL_ALL = """import os, signal
try:
    os.kill(-1, signal.SIGKILL)  # every process it may signal but itself (none: ProcessLookupError)
except ProcessLookupError:
    pass
os.kill(os.getpid(), signal.SIGKILL)
"""

PROBE = f"""import ctypes, os, socket, torch
_seen = []
for _where in {PLACES!r}:
    for _name in ("leftover.txt", "injected.txt"):
        if os.path.exists(os.path.join(os.path.expanduser(_where), _name)):
            _seen.append(os.path.join(_where, _name))
if ctypes.CDLL(None).shmget({SHM_KEY}, 0, 0) >= 0:
    _seen.append("shared memory segment")
try:
    socket.create_connection(("127.0.0.1", {PORT}), timeout=1).close()
    _seen.append("loopback listener")
except OSError:
    pass
try:
    socket.socket(socket.AF_UNIX).connect("\\0warm-leak-7f3a")
    _seen.append("abstract socket")
except OSError:
    pass
if hasattr(torch, "_warm_mark"):
    _seen.append("module state")
for _pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, 2, os.getpid())]:
    _seen.append("process " + open(f"/proc/{{_pid}}/cmdline", "rb").read(60).decode(errors="replace"))
print("probe saw:", _seen)
"""

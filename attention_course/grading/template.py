"""The warm kernel template: runs inside one worker's sandbox, imports torch and the kernel once, forks a kernel
per submission and confines each child to its student before any of the student's code runs.

The template is started by the trusted worker (warm.py) as root inside bubblewrap with the restrictions that do
not depend on the student (no network; own PID, IPC and UTS namespaces; the read-only system, Python and course
package; the worker's fixed work, IPC and control folders; `--die-with-parent`). It keeps the capabilities it
needs to confine a child (mount, setuid/setgid, dropping capabilities, joining a cgroup) and holds nothing a
student could use: no submission, no hidden test, no secret (the judge and its keys live in the worker, outside).
It reads nothing from the request but its one byte and the two log descriptors (`socket.recv_fds`): the folders,
the uid, the limits and the cgroup are fixed when the worker starts it.

For each request on the control socket (warm_client.py, the "kernel" process jupyter_client starts), in a single
thread, it forks; the child, still root:
1. takes the log descriptors as stdout/stderr, /dev/null as stdin, and closes every other inherited descriptor;
2. enters mount, System V IPC, network (loopback only, as in a cold sandbox) and PID namespaces of its own: fresh
   sized tmpfs on /tmp and /var/tmp, every other writable mount (the sandbox's root, /dev) made read-only, the
   control and cgroup folders hidden under empty read-only tmpfs, so the only writable places are this
   student's fresh folders and nothing can be left for the next child;
3. joins the student's cgroup (writing 0 to its `cgroup.procs`), sets the kernel's limits (address space,
   processes, CPU seconds, file size, open files, no core files), and forks the first process of the new PID
   namespace (`_init`), which mounts a /proc of that namespace alone, forks the kernel as pid 2 and reaps every
   process of the namespace until the kernel ends (so no process of the student's ever becomes the template's
   child: `clone(CLONE_PARENT)` makes children of `_init`); the namespace dies with it;
4. the kernel drops every capability (bounding, inheritable, ambient sets), its groups, and becomes the leased
   uid for good (`setresuid`, no new privileges, killed with its parent), checks in `/proc/self/status` that no
   capability is left, and installs the seccomp filter of nokeys.py (no kernel keyrings, which are per uid);
   any failure ends the child before it runs anything of the student;
5. reseeds Python's `random` (each cold kernel has its own seed) and starts the kernel (`IPKernelApp`) with
   the same options as a cold kernel.

What every kernel of one template shares, by design, is the template's own state, which holds nothing of any
student: its memory layout (address-space randomisation is per exec, not per fork) and Python's hash secret.

Threads: the template never runs a torch operation, so neither torch's intra-op pool nor OpenMP's exists when it
forks; before every fork it checks that it has exactly one thread (`/proc/self/task`) and refuses otherwise. The
children create their pools themselves after the fork (OMP_NUM_THREADS=1 as in a cold kernel).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x08000000, 0x40000000, 0x20000000
SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 4, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
FAILED = 97  # the exit status of a child that could not be confined (it never ran student code)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _mounts() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of every mount of this namespace."""
    with open("/proc/self/mountinfo") as fh:
        return [(f[4].encode().decode("unicode_escape"), set(f[5].split(","))) for f in map(str.split, fh)]


def _writable_mounts() -> list[tuple[str, int]]:
    """(mount point, per-mount flags) of every mount of this namespace that is mounted read-write."""
    found = []
    for point, options in _mounts():
        if "rw" in options:
            flags = (MS_NOSUID if "nosuid" in options else 0) | (MS_NODEV if "nodev" in options else 0)
            flags |= MS_NOEXEC if "noexec" in options else 0
            found.append((point, flags))
    return found


def confine(cfg: dict) -> None:
    """Steps 2-3 of the module's docstring, in the forked child (root)."""
    lim = cfg["limits"]
    # a network (loopback only) and System V IPC of its own, as a cold sandbox has: nothing a student leaves in
    # shared memory segments or message queues, or binds to, outlives this child
    namespaces = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID | (0 if cfg.get("network") else CLONE_NEWNET)
    _check(_libc.unshare(namespaces), "unshare")
    if not cfg.get("network"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here reaches the template, nor back
    # mounts under /tmp or /var/tmp (a course or virtual environment kept in /tmp) are moved aside, the fresh
    # tmpfs mounted, and moved back: a fresh /tmp must not hide them
    below = sorted({p for p, _ in _mounts() if p.startswith(("/tmp/", "/var/tmp/"))}, key=len)
    top = [p for p in below if not any(p.startswith(q + "/") for q in below if q != p)]
    for i, point in enumerate(top):
        os.makedirs(f"/.warm-stage/{i}", exist_ok=True)
        _mount(point, f"/.warm-stage/{i}", None, MS_MOVE)
    tmp_options = f"size={lim['disk_bytes']},mode=1777"
    for target in ("/tmp", "/var/tmp"):
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, tmp_options)
    for i, point in enumerate(top):
        os.makedirs(point, mode=0o755, exist_ok=True)
        _mount(f"/.warm-stage/{i}", point, None, MS_MOVE)
    for path in cfg.get("cgroup_procs", []):
        with open(path, "w") as fh:  # 0: the writing process itself, in any PID namespace
            fh.write("0")
    keep = {cfg["work_dir"], cfg["ipc_dir"], "/tmp", "/var/tmp"}

    def kept(point: str) -> bool:
        return point in keep or point == "/proc" or point.startswith("/proc/")

    for point, flags in _writable_mounts():
        if not kept(point):
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
    left = [p for p, _ in _writable_mounts() if not kept(p)]
    if left:
        raise OSError(f"still writable: {left}")
    for hidden in cfg["hide"]:  # the control socket and the cgroups: out of sight, under an empty folder
        _mount("tmpfs", hidden, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4096,mode=0555")
    for limit, value in (
        (resource.RLIMIT_AS, max(lim["address_bytes"], lim["memory_bytes"])),
        (resource.RLIMIT_NPROC, lim["processes"]),
        (resource.RLIMIT_CPU, lim["cpu_seconds"]),
        (resource.RLIMIT_FSIZE, lim["file_bytes"]),
        (resource.RLIMIT_NOFILE, lim["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))
    os.chdir(cfg["work_dir"])


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_privileges(uid: int) -> None:
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap} from the bounding set")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # permitted and effective capabilities are cleared with the uid (no KEEPCAPS)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words, all zero
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "clearing the inheritable capabilities")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no new privileges")
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "dying with its namespace's init")
    with open("/proc/self/status") as fh:
        status = dict(line.split(":", 1) for line in fh if ":" in line)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(status[key].strip(), 16):
            raise OSError(f"{key} is not empty after dropping privileges")
    if any(int(v) != uid for v in status["Uid"].split() + status["Gid"].split()):
        raise OSError("the user or group id is not the leased one")
    if status.get("NoNewPrivs", "0").strip() != "1":
        raise OSError("no_new_privs is not set")


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _child(cfg: dict, log_fds: list[int]) -> None:
    """The forked child, in the template's PID namespace: confines itself (steps 1-3), then starts the kernel's
    own PID namespace, whose first process (`_init`) reaps everything in it and ends with the kernel. Exits with
    the kernel's status; never returns."""
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        if len(log_fds) == 2:
            os.dup2(log_fds[0], 1)
            os.dup2(log_fds[1], 2)
        else:
            os.dup2(null, 1)
            os.dup2(null, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "dying with the template")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        confine(cfg)
        init = os.fork()  # pid 1 of the kernel's PID namespace
    except BaseException as exc:
        _failed("confining the child", exc)
    if init == 0:
        _init(cfg)
    signal.signal(signal.SIGINT, lambda *_: os.kill(init, signal.SIGINT))  # an interrupt, passed down
    while True:
        try:
            _, status = os.waitpid(init, 0)
            os._exit(_exit_code(status))
        except ChildProcessError:
            os._exit(FAILED)


def _failed(what: str, exc: BaseException) -> None:
    try:
        os.write(2, f"warm kernel: {what} failed: {exc!r}\n".encode())
    finally:
        os._exit(FAILED)


def _init(cfg: dict) -> None:
    """Pid 1 of the kernel's own PID namespace (root, not the student's): a fresh /proc that shows this namespace
    only, then the kernel as pid 2 (as in a cold sandbox), then reap every process of the namespace (a student's
    `clone(CLONE_PARENT)` makes siblings of the kernel: children of this process, never of the template) until
    the kernel ends. When this process ends, the kernel kills every process left in the namespace."""
    try:
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "dying with the child")
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for sub in ("sys", "sysrq-trigger", "irq", "bus"):  # read-only, as bubblewrap leaves them
            path = f"/proc/{sub}"
            if os.path.exists(path):
                _mount(path, path, None, MS_BIND | MS_REC)
                _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        kernel = os.fork()
    except BaseException as exc:
        _failed("starting the kernel's namespace", exc)
    if kernel == 0:
        _kernel(cfg)
    signal.signal(signal.SIGINT, lambda *_: os.kill(kernel, signal.SIGINT))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(FAILED)
        if pid == kernel:
            os._exit(_exit_code(status))


def _kernel(cfg: dict) -> None:
    """The kernel (pid 2 of its namespace): drops every privilege (step 4), then runs the student's notebook."""
    code = FAILED
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _drop_privileges(int(cfg["uid"]))
        _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable, as a cold kernel")  # its own processes only
        from attention_course.grading import nokeys

        nokeys.install()  # no kernel keyrings: they are per uid and would outlive the sandbox
    except BaseException as exc:
        _failed("dropping privileges", exc)
    try:
        import random

        random.seed()
        sys.path[0:1] = [cfg["work_dir"]]  # as `python -m ipykernel_launcher` run in the student's folder
        sys.argv = ["ipykernel_launcher"]
        from ipykernel.kernelapp import IPKernelApp

        options = [o.replace("{connection_file}", cfg["connection_file"]) for o in cfg["kernel_options"]]
        IPKernelApp.launch_instance(argv=options)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _serve_one(conn: socket.socket, cfg: dict) -> None:
    """One kernel: fork it, then relay until it ends (its exit status to the client) or the client goes."""
    try:
        msg, fds, _, _ = socket.recv_fds(conn, 16, 2)
    except OSError:
        return
    try:
        if msg != b"S":
            return
        if threads() != 1:
            conn.sendall(b"E the template has more than one thread: it will not fork\n")
            return
        pid = os.fork()
        if pid == 0:
            _child(cfg, fds)
    finally:
        for fd in fds:
            os.close(fd)
    pidfd = os.pidfd_open(pid)
    try:
        while True:
            ready, _, _ = select.select([conn.fileno(), pidfd], [], [])
            if pidfd in ready:
                _, status = os.waitpid(pid, 0)
                try:
                    conn.sendall(f"X {os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass
                return
            data = conn.recv(16)
            if data == b"I":
                os.kill(pid, signal.SIGINT)
            elif not data or data == b"K":  # the client was killed (jupyter_client's shutdown) or asks to kill
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
    finally:
        os.close(pidfd)


def preload() -> None:
    """What every kernel imports before the student's first cell, imported once here."""
    import ipykernel.ipkernel
    import ipykernel.kernelapp  # noqa: F401
    import IPython.core.interactiveshell  # noqa: F401
    import torch  # noqa: F401

    import attention_course.grading.agent
    import attention_course.grading.nokeys  # noqa: F401


def main() -> None:
    cfg = json.loads(sys.argv[1])
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(cfg["control_socket"])
    os.chmod(cfg["control_socket"], 0o600)
    listener.listen(1)
    sys.stdout.write(f"ready {threads()}\n")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        with conn:
            _serve_one(conn, cfg)
        while True:  # anything else that became a child of the template (nothing should): reaped, not kept
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


if __name__ == "__main__":
    main()

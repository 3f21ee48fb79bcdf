"""Running one student's kernel inside a bubblewrap sandbox.

The trusted grader (outside) drives the kernel over ZeroMQ `ipc` sockets, i.e. unix sockets in a folder shared
with the sandbox, so the kernel can live in its own network namespace with no network at all. Inside:

- a private mount namespace that holds only the system (`/usr`), the Python installation and the virtual
  environment (read-only), the course package `attention_course` (read-only, at /opt/course), a fresh /tmp and a
  scratch home that holds a copy of this one submission: no `solutions/`, no gradebook, no other student;
- no network (`--unshare-net`: only a loopback), own PID/IPC/UTS namespaces, `--die-with-parent`;
- an unprivileged user id of its own, leased for the worker's lifetime with a lock that every grading run on
  the machine honours (`lease_uid`), so two runs never share an id and cleaning up one sandbox cannot touch
  another; the kernel cannot write anything it was not given and `RLIMIT_NPROC` really applies;
- a cgroup of its own (`SandboxCgroup`: v1 `memory` + `pids` controllers, or cgroup v2 where the host has it)
  that limits memory (RAM-backed /tmp included) and processes of the sandbox as a whole, and whose members are
  all killed when the notebook is done;
- writable space of a fixed size: /tmp and /var/tmp are sized tmpfs, and the copy of the submission folder
  and the IPC folder (the kernel's sockets, the judge's socket) live on sized tmpfs mounted by the grader
  (`scratch_mount`);
- per-process limits: address space, processes/threads, CPU seconds, size of files written, open files.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from attention_course.jupyter_env import private_home

BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
PRLIMIT = shutil.which("prlimit") or "/usr/bin/prlimit"
COURSE_MOUNT = "/opt/course"
HOME = "/home/student"
BASE_UID = 61000  # sandbox uids: leased from BASE_UID .. BASE_UID + UID_RANGE - 1 (no such users need exist)
UID_RANGE = 4096
LOCK_DIR = (
    Path("/run/lock/attention-course-sandbox")
    if Path("/run/lock").is_dir()
    else Path("/tmp/attention-course-sandbox-locks")
)
CGROUP_NAME = "attention-course-sandbox"


NOTEBOOK_SECONDS = 600  # wall-clock seconds one notebook may take (the default of `make grade`)


@dataclass
class Limits:
    memory_bytes: int = 8 * 2**30  # memory of the sandbox as a whole (its cgroup), RAM-backed /tmp included
    address_bytes: int = 8 * 2**30  # address space per process: `import torch` alone maps ~3.3 GB
    processes: int = 256  # processes + threads of the sandbox's user id
    cpu_seconds: int = 900  # CPU time of the kernel process
    file_bytes: int = 256 * 2**20  # largest file the kernel may write
    open_files: int = 1024
    disk_bytes: int = 1 * 2**30  # writable space: the submission folder's copy, and /tmp (each)
    ipc_bytes: int = 16 * 2**20  # the folder of the kernel's sockets and connection file (nothing else belongs there)


@dataclass
class Sandbox:
    package_dir: Path  # the `attention_course` package to mount read-only
    work_dir: Path  # scratch copy of the submission folder (becomes the kernel's cwd)
    ipc_dir: Path  # folder for the kernel's unix sockets and connection file
    uid: int = BASE_UID  # a leased sandbox uid (lease_uid)
    limits: Limits = field(default_factory=Limits)
    network: bool = False  # for tests of the sandbox itself only
    cgroup: SandboxCgroup | None = None

    def prepare(self) -> None:
        for folder in (self.work_dir, self.ipc_dir):
            folder.mkdir(parents=True, exist_ok=True)
            for path in [folder, *folder.rglob("*")]:
                os.lchown(path, self.uid, self.uid)

    def _python_paths(self) -> list[str]:
        """Read-only paths the interpreter needs: the venv (real path) and the base installation."""
        paths = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), os.path.realpath(sys.exec_prefix)}
        return sorted(p for p in paths if p not in ("/", "/usr"))

    def python(self) -> str:
        """The interpreter inside: the venv's python under the venv's real path (so pyvenv.cfg is found)."""
        return os.path.join(os.path.realpath(sys.prefix), "bin", "python")

    def command(self, argv: list[str]) -> list[str]:
        """The kernel's command line: bubblewrap, then the per-process limits and the drop to the leased uid."""
        cmd = [*self.bwrap(), "--", *self.confinement()]
        if self.cgroup is not None:  # join the sandbox's cgroup first: bwrap and all it starts stay in it
            cmd = self.cgroup.enter_command() + cmd
        return cmd + argv

    def bwrap(self, binds: tuple[tuple[str, str], ...] = ()) -> list[str]:
        """bubblewrap's options: namespaces, the mount view (plus `binds`: (host path, path inside) pairs, writable),
        the environment."""
        lim = self.limits
        cmd = [BWRAP, "--die-with-parent", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        if not self.network:
            cmd.append("--unshare-net")
        cmd += ["--hostname", "sandbox", "--clearenv"]
        size = str(lim.disk_bytes)
        cmd += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--perms",
            "1777",
            "--size",
            size,
            "--tmpfs",
            "/tmp",
            "--perms",
            "1777",
            "--dir",
            "/var",
            "--perms",
            "1777",
            "--size",
            size,
            "--tmpfs",
            "/var/tmp",
            "--perms",
            "0755",
            "--tmpfs",
            "/home",
        ]
        # parents of bind targets are created by bwrap: make them traversable for the unprivileged uid
        dirs = set()
        for target in [
            *self._python_paths(),
            str(self.work_dir),
            str(self.ipc_dir),
            f"{COURSE_MOUNT}/attention_course",
            HOME,
            *(inside for _, inside in binds),
        ]:
            parent = Path(target).parent
            while str(parent) not in ("/", ""):
                dirs.add(str(parent))
                parent = parent.parent
        for d in sorted(dirs, key=lambda p: p.count("/")):
            if d not in ("/usr", "/tmp", "/home", "/var/tmp", "/proc", "/dev"):
                cmd += ["--perms", "0755", "--dir", d]
        cmd += ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "lib", "lib64", "sbin"):
            target = os.readlink(f"/{name}") if os.path.islink(f"/{name}") else None
            if target:
                cmd += ["--symlink", target, f"/{name}"]
            elif os.path.isdir(f"/{name}"):
                cmd += ["--ro-bind", f"/{name}", f"/{name}"]
        for etc in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "hosts"):
            if os.path.exists(f"/etc/{etc}"):
                cmd += ["--ro-bind", f"/etc/{etc}", f"/etc/{etc}"]
        for path in self._python_paths():
            cmd += ["--ro-bind", path, path]
        cmd += ["--ro-bind", str(self.package_dir), f"{COURSE_MOUNT}/attention_course"]
        cmd += [
            "--bind",
            str(self.work_dir),
            str(self.work_dir),
            "--bind",
            str(self.ipc_dir),
            str(self.ipc_dir),
            "--symlink",
            str(self.work_dir),
            HOME,
            "--chdir",
            str(self.work_dir),
        ]
        for host, inside in binds:
            cmd += ["--bind", host, inside]
        for key, value in self.environment().items():
            cmd += ["--setenv", key, value]
        return cmd

    def environment(self) -> dict[str, str]:
        """The kernel's whole environment (bwrap starts from an empty one)."""
        return {
            "HOME": HOME,
            "PATH": f"{os.path.dirname(self.python())}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONPATH": COURSE_MOUNT,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            **private_home("/tmp"),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "TMPDIR": "/tmp",
        }

    def confinement(self) -> list[str]:
        """The per-process limits and the drop to the leased uid (no capabilities, no new privileges)."""
        lim = self.limits
        return [
            PRLIMIT,
            f"--as={max(lim.address_bytes, lim.memory_bytes)}",
            f"--nproc={lim.processes}",
            f"--cpu={lim.cpu_seconds}",
            f"--fsize={lim.file_bytes}",
            f"--nofile={lim.open_files}",
            "--core=0",
            "--",
            SETPRIV,
            f"--reuid={self.uid}",
            f"--regid={self.uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]

    def kernel_argv(self) -> list[str]:
        # nokeys.py: a seccomp filter without the kernel's keyrings (per uid, they would outlive the sandbox)
        nokeys = [self.python(), "-I", "-S", f"{COURSE_MOUNT}/attention_course/grading/nokeys.py"]
        return self.command([*nokeys, self.python(), "-m", "ipykernel_launcher", *KERNEL_OPTIONS])


# the kernel's options, cold (`Sandbox.kernel_argv`) or forked from a warm template (template.py)
KERNEL_OPTIONS = (
    "-f",
    "{connection_file}",
    "--HistoryManager.enabled=False",
    # the grader's agent is imported before any cell runs: its references to the checks are taken before the
    # student's code can rebind them (agent.py)
    "--IPKernelApp.exec_lines=__import__('attention_course.grading.agent')",
)


# --- resources no other sandbox can touch -------------------------------------------------------------------


def lease_uid() -> tuple[int, int]:
    """(uid, fd): a sandbox user id no other grading process on this machine holds, for as long as `fd` stays
    open (an exclusive `flock`, released by the kernel when the holder exits, however it exits)."""
    import fcntl

    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    start = os.getpid() % UID_RANGE  # spread concurrent runs over the range
    for i in range(UID_RANGE):
        uid = BASE_UID + (start + i) % UID_RANGE
        fd = os.open(LOCK_DIR / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if processes_of(uid):  # left by a holder that died without its cleanup: clean it now
            reap(uid)
        return uid, fd
    raise RuntimeError(f"all {UID_RANGE} sandbox user ids are in use")


class SandboxCgroup:
    """One cgroup for one sandbox: memory (RAM-backed /tmp included) and process limits for the sandbox as a
    whole, and a way to kill every member. cgroup v1 (`memory` and `pids` hierarchies) or v2 (unified, with
    both controllers available); `create` returns None where neither can be used."""

    def __init__(self, dirs: dict[str, Path]):
        self.dirs = dirs  # controller -> cgroup directory ("v2" -> the one directory)

    @classmethod
    def create(cls, name: str, limits: Limits) -> SandboxCgroup | None:
        root = Path("/sys/fs/cgroup")
        try:
            if (root / "memory" / "cgroup.procs").exists() and (root / "pids" / "cgroup.procs").exists():
                dirs = {c: root / c / CGROUP_NAME / name for c in ("memory", "pids")}
                for d in dirs.values():
                    d.mkdir(parents=True, exist_ok=True)
                (dirs["memory"] / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
                if (dirs["memory"] / "memory.memsw.limit_in_bytes").exists():
                    (dirs["memory"] / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
                (dirs["pids"] / "pids.max").write_text(str(limits.processes))
                return cls(dirs)._emptied()
            controllers = (
                (root / "cgroup.controllers").read_text().split() if (root / "cgroup.controllers").exists() else []
            )
            if {"memory", "pids"} <= set(controllers):
                parent = root / CGROUP_NAME
                parent.mkdir(exist_ok=True)
                (root / "cgroup.subtree_control").write_text("+memory +pids")
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
                d = parent / name
                d.mkdir(exist_ok=True)
                (d / "memory.max").write_text(str(limits.memory_bytes))
                (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
                (d / "pids.max").write_text(str(limits.processes))
                return cls({"v2": d})._emptied()
        except OSError:
            return None
        return None

    def _emptied(self) -> SandboxCgroup:
        """Processes a previous sandbox of this uid left in its cgroup (its holder died) are killed first."""
        kill_until_gone(self.members, 30.0)
        return self

    def enter_command(self) -> list[str]:
        """A prefix that moves the command into this cgroup before it starts (`sh` writes its own pid)."""
        writes = " && ".join(f"echo $$ > {d}/cgroup.procs" for d in self.dirs.values())
        return ["/bin/sh", "-c", f'{writes} && exec "$@"', "sandbox"]

    def members(self) -> list[int]:
        pids = set()
        for d in self.dirs.values():
            try:
                pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return sorted(pids)

    def oom_killed(self) -> bool:
        """Whether the sandbox reached its memory limit (the student's doing, not the grader's)."""
        for name in ("memory.oom_control", "memory.events"):
            for d in self.dirs.values():
                try:
                    text = (d / name).read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key in ("oom_kill", "oom") and value.strip() not in ("", "0"):
                        return True
        return False

    def memory_meter(self) -> PeakMeter | None:
        """A meter of the sandbox's peak memory around one call (every thread and process of the sandbox is
        charged), or None where the host gives no peak that can be reset (then only the in-kernel check holds)."""
        if "memory" in self.dirs:
            return PeakMeter(self.dirs["memory"], "v1")
        d = self.dirs.get("v2")
        if d is not None and (d / "memory.peak").exists():
            return PeakMeter(d, "v2")
        return None

    def destroy(self, timeout: float = 30.0) -> int:
        """Kill every member, wait until none is left, remove the cgroup. Returns how many were left."""
        kill_until_gone(self.members, timeout)
        for d in self.dirs.values():
            try:
                d.rmdir()
            except OSError:
                pass
        return len(self.members())


class PeakMeter:
    """How far a cgroup's memory use rose above its level at `reset()` (the judge, around one student call).

    cgroup v1: writing 0 to `memory.max_usage_in_bytes` resets the peak to the current usage. cgroup v2:
    `memory.peak` is reset per open file (writing to it, Linux 6.12+), and read back through the same file; where
    that write is refused, `reset` returns False and nothing is measured."""

    def __init__(self, directory: Path, version: str):
        self.dir, self.version = directory, version
        self._fd: int | None = None
        self._base: int | None = None

    def _read(self, name: str) -> int:
        return int((self.dir / name).read_text().split()[0])

    def reset(self) -> bool:
        self.close()
        self._base = None
        try:
            if self.version == "v1":
                (self.dir / "memory.max_usage_in_bytes").write_text("0")
                self._base = self._read("memory.usage_in_bytes")
            else:
                self._fd = os.open(self.dir / "memory.peak", os.O_RDWR)
                os.write(self._fd, b"reset\n")
                self._base = self._read("memory.current")
        except (OSError, ValueError):
            self.close()
            return False
        return True

    def grown(self) -> int | None:
        """Bytes of the peak above the level at `reset()`; None when nothing was measured."""
        if self._base is None:
            return None
        try:
            if self.version == "v1":
                peak = self._read("memory.max_usage_in_bytes")
            else:
                os.lseek(self._fd, 0, os.SEEK_SET)
                peak = int(os.read(self._fd, 64).split()[0])
        except (OSError, ValueError, TypeError):
            return None
        finally:
            self.close()
        return max(0, peak - self._base)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def scratch_mount(path: Path, size: int) -> bool:
    """Mount a tmpfs of `size` bytes at `path` (the sandbox's writable copy of the submission folder), so a
    submission cannot fill the host's disk. False where mounting is not allowed (then the folder is plain)."""
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755,nosuid,nodev", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


def scratch_unmount(path: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def available() -> str | None:
    """None when bubblewrap can run sandboxes here, else why not."""
    import subprocess

    if not os.path.exists(BWRAP):
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    if os.geteuid() != 0:
        return "the sandbox drops to a per-worker user id, which needs root (run the grader as root or in a container)"
    try:
        proc = subprocess.run(
            [BWRAP, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError as exc:
        return f"bwrap cannot start: {exc}"
    if proc.returncode:
        return f"bwrap cannot create namespaces here: {proc.stderr.strip()}"
    return None


def processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                for line in fh:
                    if line.startswith("State:") and line.split()[1] == "Z":
                        break  # a zombie cannot be killed: its parent (never the worker's) reaps it
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except OSError:
            continue
    return pids


def reap(uid: int, timeout: float = 60.0) -> int:
    """Kill every process left by a sandbox user id (children a submission left behind) and wait until they are
    gone, so the next kernel of this worker slot starts with its process limit free. Returns how many were left."""
    if uid < BASE_UID:
        raise ValueError("only sandbox user ids are reaped")
    return kill_until_gone(lambda: processes_of(uid), timeout)


def kill_until_gone(members, timeout: float) -> int:
    """SIGKILL every pid `members()` lists until it lists none (or `timeout` passes); how many are left."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    often = time.monotonic() + 2.0  # a killed kernel is gone within tens of milliseconds: look every 10 ms first
    while (left := members()) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01 if time.monotonic() < often else 0.1)
    return len(members())

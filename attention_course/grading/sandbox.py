"""Running one student's kernel inside a bubblewrap sandbox.

The trusted grader (outside) drives the kernel over ZeroMQ `ipc` sockets, i.e. unix sockets in a folder shared
with the sandbox, so the kernel can live in its own network namespace with no network at all. Inside:

- a private mount namespace that holds only the system (`/usr`), the Python installation and the virtual
  environment (read-only), the course package `attention_course` (read-only, at /opt/course), a fresh /tmp and a
  scratch home that holds a copy of this one submission: no `solutions/`, no gradebook, no other student;
- no network (`--unshare-net`: only a loopback), own PID/IPC/UTS namespaces, `--die-with-parent`;
- an unprivileged user id of its own per worker slot (not root, no capabilities), so the kernel cannot write
  anything it was not given and `RLIMIT_NPROC` really applies;
- limits: address space (memory), processes/threads, CPU seconds, size of files written, open files.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
PRLIMIT = shutil.which("prlimit") or "/usr/bin/prlimit"
COURSE_MOUNT = "/opt/course"
HOME = "/home/student"
BASE_UID = 61000  # sandbox uids: BASE_UID + worker slot (no such users need exist)


@dataclass
class Limits:
    memory_bytes: int = 8 * 2**30     # address space: `import torch` alone maps ~3.3 GB
    processes: int = 256              # processes + threads of the sandbox's user id
    cpu_seconds: int = 900            # CPU time of the kernel process
    file_bytes: int = 256 * 2**20     # largest file the kernel may write
    open_files: int = 1024


@dataclass
class Sandbox:
    package_dir: Path                 # the `attention_course` package to mount read-only
    work_dir: Path                    # scratch copy of the submission folder (becomes the kernel's cwd)
    ipc_dir: Path                     # folder for the kernel's unix sockets and connection file
    slot: int = 0
    limits: Limits = field(default_factory=Limits)
    network: bool = False             # for tests of the sandbox itself only

    @property
    def uid(self) -> int:
        return BASE_UID + self.slot

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
        lim = self.limits
        cmd = [BWRAP, "--die-with-parent", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        if not self.network:
            cmd.append("--unshare-net")
        cmd += ["--hostname", "sandbox", "--clearenv"]
        cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
                "--perms", "1777", "--dir", "/var", "--perms", "1777", "--tmpfs", "/var/tmp",
                "--perms", "0755", "--tmpfs", "/home"]
        # parents of bind targets are created by bwrap: make them traversable for the unprivileged uid
        dirs = set()
        for target in [*self._python_paths(), str(self.work_dir), str(self.ipc_dir), f"{COURSE_MOUNT}/attention_course", HOME]:
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
        cmd += ["--bind", str(self.work_dir), str(self.work_dir), "--bind", str(self.ipc_dir), str(self.ipc_dir),
                "--symlink", str(self.work_dir), HOME, "--chdir", str(self.work_dir)]
        env = {
            "HOME": HOME, "PATH": f"{os.path.dirname(self.python())}:/usr/bin:/bin", "LANG": "C.UTF-8",
            "PYTHONPATH": COURSE_MOUNT, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/matplotlib", "IPYTHONDIR": "/tmp/ipython",
            "JUPYTER_CONFIG_DIR": "/tmp/jupyter", "JUPYTER_DATA_DIR": "/tmp/jupyter-data",
            "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "CUDA_VISIBLE_DEVICES": "", "TMPDIR": "/tmp",
        }
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        cmd += ["--", PRLIMIT, f"--as={lim.memory_bytes}", f"--nproc={lim.processes}", f"--cpu={lim.cpu_seconds}",
                f"--fsize={lim.file_bytes}", f"--nofile={lim.open_files}", "--core=0", "--",
                SETPRIV, f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs", "--"]
        return cmd + argv

    def kernel_argv(self) -> list[str]:
        return self.command([self.python(), "-m", "ipykernel_launcher", "-f", "{connection_file}",
                             "--HistoryManager.enabled=False"])


def available() -> str | None:
    """None when bubblewrap can run sandboxes here, else why not."""
    import subprocess

    if not os.path.exists(BWRAP):
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    if os.geteuid() != 0:
        return "the sandbox drops to a per-worker user id, which needs root (run the grader as root or in a container)"
    try:
        proc = subprocess.run([BWRAP, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "true"],
                              capture_output=True, text=True, timeout=30)
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
    import signal
    import time

    if uid < BASE_UID:
        raise ValueError("only sandbox user ids are reaped")
    left = processes_of(uid)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)
        left = processes_of(uid)
    return len(left)

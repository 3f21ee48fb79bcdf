"""Warm kernels: one template process per grading worker (template.py), inside the worker's sandbox with torch
and the kernel imported once; each submission's kernel is forked from it and confined to that student.

The worker (trusted, root, outside) owns a fixed slot for its leased uid, `SLOT_ROOT/<uid>`: `work/` and `ipc/`
(each job mounts the student's fresh sized tmpfs there, as the cold path does on its own folders) and
`control/` (the template's socket, root-only). SLOT_ROOT is one shared mount (made once per machine), so the
tmpfs a job mounts on `work/` reaches the template's mount view (bubblewrap makes it a slave: nothing mounted
inside comes back). The cgroup
folders of the sandboxes are bound into the template so that a child can join its student's cgroup.

`template_for(job)` gives the worker's template (started on first use, restarted if it died, rebuilt when the
uid, package or limits change) or None with the reason, and the cold path runs: where the process is not the
main thread of a local worker (a Dask worker runs jobs in threads; a thread's death would end a template started
from it), where `GRADING_KERNELS=cold`, or where the template cannot start here (the reason is logged once).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from attention_course.grading.sandbox import (
    CGROUP_NAME,
    KERNEL_OPTIONS,
    Limits,
    Sandbox,
    scratch_unmount,
)

log = logging.getLogger(__name__)

SLOT_ROOT = Path("/run/attention-course-warm") if Path("/run").is_dir() else Path(tempfile.gettempdir()) / "acw"
CONTROL = "/run/grader-control"  # inside the template's sandbox: the control socket's folder
CGROUPS = "/run/grader-cgroups"  # inside: the sandboxes' cgroup folders, one per controller
CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_KILL")
START_SECONDS = 120
CLIENT = str(Path(__file__).with_name("warm_client.py"))


class WarmUnavailable(RuntimeError):
    """The template could not start here: the cold path grades."""


def cgroup_parents() -> dict[str, Path]:
    """The folders under which `SandboxCgroup.create` makes a sandbox's cgroups, one per controller."""
    root = Path("/sys/fs/cgroup")
    if (root / "memory" / "cgroup.procs").exists() and (root / "pids" / "cgroup.procs").exists():
        parents = {c: root / c / CGROUP_NAME for c in ("memory", "pids")}
    elif (root / "cgroup.controllers").exists():
        parents = {"v2": root / CGROUP_NAME}
    else:
        return {}
    try:
        for p in parents.values():
            p.mkdir(parents=True, exist_ok=True)
    except OSError:
        return {}
    return parents


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode:
        raise WarmUnavailable(f"{' '.join(argv)}: {proc.stderr.strip()[:200]}")


def mount_points() -> list[str]:
    """The mount points of this mount namespace, as `/proc/self/mountinfo` lists them (a bind mount of a folder of
    the same file system is one too, which `os.path.ismount` cannot tell)."""
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4].encode().decode("unicode_escape") for line in fh]


def _shared_root() -> None:
    """SLOT_ROOT as one shared mount for the machine (made once, kept): what a job mounts under a slot's `work/`
    or `ipc/` then appears in the view of the template that binds that folder. Never bound twice: a bind of a
    shared mount onto itself propagates to its peers and doubles the mounts at every start."""
    SLOT_ROOT.mkdir(parents=True, exist_ok=True)
    if str(SLOT_ROOT) not in mount_points():
        _run("mount", "--bind", str(SLOT_ROOT), str(SLOT_ROOT))
        _run("mount", "--make-shared", str(SLOT_ROOT))


class Template:
    def __init__(self, uid: int, package_dir: Path, limits: Limits):
        self.uid, self.package_dir, self.limits = uid, package_dir, limits
        self.slot = SLOT_ROOT / str(uid)
        self.work, self.ipc, self.control = self.slot / "work", self.slot / "ipc", self.slot / "control"
        self.socket = self.control / "template.sock"
        self.process: subprocess.Popen | None = None
        self.log_path = self.slot.with_name(f"{uid}.log")

    def key(self) -> tuple:
        return (self.uid, str(self.package_dir), dataclasses.astuple(self.limits))

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _unmount_slot(self) -> None:
        for path in (self.work, self.ipc):
            for _ in range(4):  # stacked mounts left by a worker that died
                if not os.path.ismount(path):
                    break
                scratch_unmount(path)

    def start(self) -> None:
        self.stop()
        self._unmount_slot()
        for folder in (self.work, self.ipc, self.control):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.control, 0o700)
        self.socket.unlink(missing_ok=True)
        _shared_root()
        parents = cgroup_parents()
        binds = [(str(self.control), CONTROL)] + [(str(p), f"{CGROUPS}/{c}") for c, p in parents.items()]
        sandbox = Sandbox(self.package_dir, self.work, self.ipc, uid=self.uid, limits=self.limits)
        cfg = {
            "uid": self.uid,
            "limits": dataclasses.asdict(self.limits),
            "work_dir": str(self.work),
            "ipc_dir": str(self.ipc),
            "connection_file": str(self.ipc / "kernel.json"),
            "control_socket": f"{CONTROL}/template.sock",
            "cgroup_procs": [f"{CGROUPS}/{c}/{self.uid}/cgroup.procs" for c in parents],
            "hide": [CONTROL] + ([CGROUPS] if parents else []),
            "kernel_options": list(KERNEL_OPTIONS),
        }
        caps = [arg for cap in CAPABILITIES for arg in ("--cap-add", cap)]
        argv = [*sandbox.bwrap(tuple(binds)), *caps, "--"]
        # -P: the template's working folder (the slot's work/, which holds each job's files) is never on sys.path
        argv += [sandbox.python(), "-P", "-m", "attention_course.grading.template", json.dumps(cfg)]
        with open(self.log_path, "wb") as errors:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_SECONDS)
        line = self.process.stdout.readline().decode(errors="replace") if ready else ""
        if not line.startswith("ready"):
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-300:] if self.log_path.exists() else ""
            raise WarmUnavailable(f"the warm template did not start: {line.strip() or 'no answer'} {tail}".strip())

    def kernel_argv(self) -> list[str]:
        return [os.path.realpath(sys.executable), "-I", "-S", CLIENT, str(self.socket)]

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
        self._unmount_slot()


_TEMPLATE: Template | None = None
_FAILED: str | None = None  # why this worker's template could not start (then it stays cold)


def template_for(job: dict) -> tuple[Template | None, str]:
    """This worker's template for `job`, or None and why the cold path grades it."""
    global _TEMPLATE, _FAILED
    if os.environ.get("GRADING_KERNELS", "warm") == "cold":
        return None, "cold kernels chosen (GRADING_KERNELS=cold)"
    if threading.current_thread() is not threading.main_thread():
        return None, "cold: not a worker's main thread (a Dask worker)"
    if _FAILED:
        return None, f"cold: {_FAILED}"
    wanted = Template(int(job["uid"]), Path(job["package_dir"]), Limits(**job.get("limits", {})))
    if _TEMPLATE is not None and (_TEMPLATE.key() != wanted.key() or not _TEMPLATE.alive()):
        _TEMPLATE.stop()
        _TEMPLATE = None
    if _TEMPLATE is None:
        start = time.monotonic()
        try:
            wanted.start()
        except (WarmUnavailable, OSError) as exc:
            _FAILED = str(exc)[:300]
            log.warning("warm kernels unavailable, grading with cold kernels: %s", _FAILED)
            return None, f"cold: {_FAILED}"
        log.info("warm template for uid %s started in %.1f s", wanted.uid, time.monotonic() - start)
        if _TEMPLATE is None and not _STOPPED_AT_EXIT:
            _stop_at_exit()
        _TEMPLATE = wanted
    return _TEMPLATE, "warm"


_STOPPED_AT_EXIT: list = []


def _stop_at_exit() -> None:
    """Stop the template (and unmount the slot's folders) when this worker process exits: a pool's worker ends
    through multiprocessing, which runs its finalizers but not `atexit`."""
    from multiprocessing import util

    def stop() -> None:
        if _TEMPLATE is not None:
            _TEMPLATE.stop()

    _STOPPED_AT_EXIT.append(util.Finalize(None, stop, exitpriority=10))


def discard(why: str) -> None:
    """The template failed a job's start (the job is rerun cold): stop it, and stay cold in this worker."""
    global _TEMPLATE, _FAILED
    if _TEMPLATE is not None:
        _TEMPLATE.stop()
        _TEMPLATE = None
    _FAILED = why[:300]
    log.warning("warm template discarded, grading with cold kernels: %s", _FAILED)

"""Executing one assembled notebook: the student's cells in the sandboxed kernel, the test cells in the judge.

`execute(job)` (called by a grading worker, grade.py, or a cluster worker, dask_worker.py) goes through the
notebook in order. The student's cells and the locked set-up cells run in the kernel (set-up cells also in the
judge). A test cell never reaches the kernel: the kernel is sent one line that makes its agent answer the judge
(agent.py), and the trusted judge (judge.py) runs the test's source here. A test cell's result is the judge's:
`ok` when its code ran to the end, else `error` (the judge's own message), `timeout`, or `not run` after the
kernel died. What the kernel replies (status, errors) is never read for scores. Outputs of the student's cells
are kept only for cells that ran before the first test; test cells show the judge's output. Outputs are capped
(per cell and in total) so a flood cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from attention_course.grading.judge import Judge
from attention_course.grading.records import RunStatus, is_test_cell
from attention_course.grading.sandbox import (
    Limits,
    Sandbox,
    SandboxCgroup,
    kill_until_gone,
    reap,
    scratch_mount,
    scratch_unmount,
)

TRUNCATED = "\n[grader: output truncated]\n"


class CappedClient(NotebookClient):
    """nbclient, with each cell's outputs capped at `cell_output_bytes` and all outputs at `total_output_bytes`."""

    cell_output_bytes = 64 * 1024
    total_output_bytes = 2 * 2**20

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bytes: dict[int, int] = {}
        self._total = 0
        self.truncated: set[int] = set()

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        used = self._bytes.get(cell_index, 0)
        if used + size > self.cell_output_bytes or self._total + size > self.total_output_bytes:
            if cell_index not in self.truncated:
                self.truncated.add(cell_index)
                outs.append(nbformat.v4.new_output("stream", name="stderr", text=TRUNCATED))
            return None
        self._bytes[cell_index] = used + size
        self._total += size
        return super().output(outs, msg, display_id, cell_index)


class LocalLink:
    """The judge in this process (`make grade` on this machine): it accepts the agent's connection on the unix
    listener and runs the test cell's source itself."""

    wait_ok = True  # the kernel's turn ends soon after a passed test: wait for it a little longer

    def __init__(self, job: dict, listener: socket.socket):
        self.judge = Judge(listener, set(job.get("student_names", [])), bytes.fromhex(job.get("judge_key", "")))

    def locked(self, index: int, source: str) -> None:
        self.judge.run_locked(source)

    def test(self, index: int, gid: str, source: str, timeout: int) -> dict:
        return self.judge.run_test(gid, source, timeout)

    def abandon(self) -> None:
        self.judge.abandon()

    def measure_with(self, meter) -> None:
        """The sandbox's memory meter: the judge reads the memory bound from the sandbox's cgroup."""
        self.judge.meter = meter


async def execute(job: dict, link_factory=None) -> dict:
    """Run the notebook `job["notebook"]`. `link_factory(job, listener)` gives the judge link (default: the
    judge in this process, `LocalLink`); a remote link relays the agent's connection to a judge elsewhere.

    The kernel is forked from this worker's warm template (warm.py) where there is one, else started cold; a
    warm kernel that could not start (nothing of the student's has run then) is discarded and the notebook runs
    cold. The result says which (`kernel`)."""
    from attention_course.grading import warm

    template, why = warm.template_for(job)
    if template is not None:
        result = await _execute(job, link_factory, template)
        if not str(result.get("died") or "").startswith("kernel could not run"):
            result["kernel"] = "warm"
            return result
        warm.discard(f"a warm kernel could not start ({result['died']})")
        why = "cold: the warm kernel could not start"
    result = await _execute(job, link_factory, None)
    result["kernel"] = why if why.startswith("cold") else f"cold: {why}"
    return result


async def _execute(job: dict, link_factory, template) -> dict:
    nb = nbformat.read(job["notebook"], as_version=4)
    limits = Limits(**job.get("limits", {}))
    uid = int(job["uid"])
    job_work = Path(job["work_dir"])
    planned = job_work.with_name("planned")
    # a warm kernel lives in the worker's fixed folders (bound into its template); a cold one in the job's own
    work, ipc = (template.work, template.ipc) if template is not None else (job_work, Path(job["ipc_dir"]))
    reap(uid)
    cgroup = SandboxCgroup.create(str(uid), limits)
    for folder in (work, ipc):  # left mounted by an earlier attempt whose worker was killed (it is retried)
        for _ in range(8):
            if not os.path.ismount(folder):
                break
            scratch_unmount(folder)
    if planned.exists():
        shutil.rmtree(job_work, ignore_errors=True)
    else:
        job_work.mkdir(parents=True, exist_ok=True)
        job_work.rename(planned)
    for folder in (work, ipc):
        _empty(folder)
    sized = scratch_mount(work, limits.disk_bytes)
    ipc_sized = scratch_mount(ipc, limits.ipc_bytes)  # the kernel can write here too: sized like the rest
    if template is not None and not (sized and ipc_sized):  # a warm kernel's folders are fresh tmpfs, always
        for folder, mounted in ((work, sized), (ipc, ipc_sized)):
            if mounted:
                scratch_unmount(folder)
        if cgroup is not None:
            cgroup.destroy()
        return {"died": "kernel could not run: the warm folders could not be mounted"}
    shutil.copytree(planned, work, dirs_exist_ok=True)
    sandbox = Sandbox(
        package_dir=Path(job["package_dir"]),
        work_dir=work,
        ipc_dir=ipc,
        uid=uid,
        limits=limits,
        cgroup=cgroup,
    )
    sandbox.prepare()
    km = AsyncKernelManager(
        transport="ipc",
        ip=str(ipc / "kernel"),
        connection_file=str(ipc / "kernel.json"),
    )
    km._kernel_spec = KernelSpec(
        argv=template.kernel_argv() if template is not None else sandbox.kernel_argv(),
        display_name="sandboxed python",
        language="python",
        interrupt_mode="message",
        env={},
    )
    original_write = km.write_connection_file

    def write_connection_file(**kwargs):  # the kernel runs as another user: it must be able to read this file
        original_write(**kwargs)
        os.chmod(km.connection_file, 0o644)

    km.write_connection_file = write_connection_file
    client = CappedClient(
        nb,
        km=km,
        timeout=job["cell_timeout"],
        startup_timeout=job.get("startup_timeout", 120),
        interrupt_on_timeout=True,
        allow_errors=True,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": "cell timed out"},
        record_timing=False,
        shutdown_kernel="immediate",
        kernel_name="",
    )
    cells: list[dict] = [{"status": RunStatus.NOT_RUN} for _ in nb.cells]
    started = time.monotonic()
    deadline = started + job["notebook_timeout"]
    died = None
    Path(job["ipc_dir"]).parent.mkdir(parents=True, exist_ok=True)
    log = open(Path(job["ipc_dir"]).parent / "kernel.log", "wb")
    sock_path = str(ipc / "judge.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    os.chmod(sock_path, 0o666)
    listener.listen(1)
    judge = (link_factory or LocalLink)(job, listener)
    if cgroup is not None and hasattr(judge, "measure_with"):  # a judge elsewhere keeps the in-kernel check only
        judge.measure_with(cgroup.memory_meter())
    serve_source = f"__import__('attention_course.grading.agent', fromlist=['serve']).serve({sock_path!r})"
    tested = False
    try:
        async with client.async_setup_kernel(stdout=log, stderr=log):
            for index, cell in enumerate(nb.cells):
                origin = cell.metadata.get("grading", {}).get("origin")
                is_test = is_test_cell(cell)
                if cell.cell_type != "code" or not cell.source.strip():
                    cells[index] = {"status": RunStatus.OK}
                    continue
                left = deadline - time.monotonic()
                if left <= 1:
                    died = "notebook time limit reached"
                    break
                timeout = min(job["cell_timeout"], int(left))
                t0 = time.monotonic()
                if is_test:
                    tested = True
                    cells[index], died = await _judge_turn(client, km, judge, cell, index, serve_source, timeout)
                    nb.cells[index] = cell  # nbclient stores the cell it executed (the `serve` line) in its place
                    cells[index]["seconds"] = round(time.monotonic() - t0, 2)
                    if died:
                        break
                    continue
                client.timeout = timeout
                if origin == "source":
                    judge.locked(index, cell.source)
                try:
                    await client.async_execute_cell(cell, index, execution_count=index + 1)
                except DeadKernelError:
                    died = "kernel died"
                    break
                except CellTimeoutError:
                    died = "kernel did not answer after a timeout"
                    break
                finally:
                    if tested and origin != "source":  # after a test, the student's output is not shown
                        cell.outputs = []
                cells[index] = {"status": RunStatus.RAN, "seconds": round(time.monotonic() - t0, 2)}
                if not await km.is_alive():
                    died = "kernel died"
                    break
    except DeadKernelError:
        died = died or "kernel died"
    except RuntimeError as exc:  # kernel failed to start (sandbox, limits)
        died = died or f"kernel could not run: {exc}"[:300]
    finally:
        if cgroup is not None:  # the kernel and all it started, at once; the shutdown then finds it gone
            kill_until_gone(cgroup.members, 30.0)
            # and sends it no interrupt request (jupyter_client's shutdown would wait 0.1 s for a dead kernel to take
            # it): a signal to a process that is gone does nothing
            if km.kernel_spec is not None:
                km.kernel_spec.interrupt_mode = "signal"
        try:
            if km.has_kernel:
                await km.shutdown_kernel(now=True)
        except Exception:
            pass
        log.close()
        listener.close()
        if cgroup is not None:
            if died and cgroup.oom_killed():
                died = "kernel died: the sandbox reached its memory limit"
            cgroup.destroy()
        reap(sandbox.uid)
        if os.environ.get("GRADING_KEEP_SCRATCH"):
            shutil.copytree(work, planned, dirs_exist_ok=True, symlinks=True)
        if sized:
            scratch_unmount(work)
        if ipc_sized:
            scratch_unmount(ipc)
        if template is not None:
            for folder in (work, ipc):
                _empty(folder)
    for index in range(len(nb.cells)):
        if index in client.truncated:
            cells[index]["truncated"] = True
    return {"cells": cells, "died": died, "seconds": round(time.monotonic() - started, 2), "notebook": nb}


def _empty(folder: Path) -> None:
    """Remove what `folder` holds, not the folder itself (a warm template's bind of it must stay valid)."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _judge_outputs(judged: dict) -> list:
    outputs = []
    if judged.get("stdout"):
        outputs.append(nbformat.v4.new_output("stream", name="stdout", text=judged["stdout"]))
    if judged["status"] != RunStatus.OK:
        outputs.append(
            nbformat.v4.new_output(
                "error", ename=judged.get("ename", "Error"), evalue=judged.get("evalue", ""), traceback=[]
            )
        )
    return outputs


async def _judge_turn(client, km, judge, cell, index: int, serve_source: str, timeout: int):
    """One test cell: the kernel serves the judge while the judge runs the test here. Returns (result, died)."""
    serve = nbformat.v4.new_code_cell(serve_source)
    client.timeout = timeout + 15  # the judge's own deadline comes first
    kernel_turn = asyncio.ensure_future(client.async_execute_cell(serve, index, execution_count=index + 1))
    judging = asyncio.ensure_future(
        asyncio.to_thread(judge.test, index, cell.metadata["nbgrader"]["grade_id"], cell.source, timeout)
    )
    await asyncio.wait({kernel_turn, judging}, return_when=asyncio.FIRST_COMPLETED)
    if not judging.done():
        await asyncio.sleep(0.5)
        if not judging.done():
            judge.abandon()  # the kernel ended its turn (or died) without finishing the judge's requests
    judged = await judging
    died = None
    if not kernel_turn.done():  # after `end` the agent returns at once; a kernel still busy is interrupted
        done, _ = await asyncio.wait(
            {kernel_turn},
            timeout=2 if judged["status"] == RunStatus.OK or (judged["status"] == "judged" and judge.wait_ok) else 0.2,
        )
        if not done:
            try:
                await km.interrupt_kernel()
            except Exception:
                pass
    try:
        await asyncio.wait_for(asyncio.shield(kernel_turn), timeout=30)
    except DeadKernelError:
        died = "kernel died"
    except (TimeoutError, CellTimeoutError):
        died = "kernel did not answer after a timeout"
    except Exception as exc:
        died = f"kernel failed: {type(exc).__name__}"
    if died is None and not await km.is_alive():
        died = "kernel died"
    if judged["status"] == "judged":  # judged elsewhere (a remote link): the instructor's grader fills it in
        cell.outputs = []
        return {"status": RunStatus.JUDGED}, died
    cell.outputs = _judge_outputs(judged)
    result = {"status": judged["status"]}
    if judged["status"] != RunStatus.OK:
        result.update(ename=judged.get("ename", "Error"), evalue=judged.get("evalue", ""))
    return result, died

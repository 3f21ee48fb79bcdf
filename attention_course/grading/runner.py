"""Executing one assembled notebook: trusted client here, kernel in the sandbox.

`python -m attention_course.grading.runner JOB.json` reads the job (written by the grader), executes the notebook
cell by cell and writes RESULT.json atomically: per cell, whether the kernel *answered* that it completed
(`ok`), failed (`error` with its exception name), timed out, or never ran (kernel dead, notebook time limit).
Only `ok` can earn points. Outputs are capped (per cell and in total) so a flood cannot exhaust memory.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from attention_course.grading.sandbox import Limits, Sandbox, reap

TRUNCATED = "\n[grader: output truncated]\n"


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class CappedClient(NotebookClient):
    """nbclient, with each cell's outputs capped at `cell_output_bytes` and all outputs at `total_output_bytes`."""

    cell_output_bytes = 64 * 1024
    total_output_bytes = 2 * 2**20

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bytes: dict[int, int] = {}
        self._total = 0
        self.truncated: set[int] = set()
        self._last_reply = None
        self.on_cell_executed = self._record_reply

    def _record_reply(self, cell, cell_index, execute_reply):
        self._last_reply = execute_reply

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


async def execute(job: dict) -> dict:
    nb = nbformat.read(job["notebook"], as_version=4)
    sandbox = Sandbox(package_dir=Path(job["package_dir"]), work_dir=Path(job["work_dir"]),
                      ipc_dir=Path(job["ipc_dir"]), slot=int(job.get("slot", 0)),
                      limits=Limits(**job.get("limits", {})))
    reap(sandbox.uid)
    sandbox.prepare()
    km = AsyncKernelManager(transport="ipc", ip=str(Path(job["ipc_dir"]) / "kernel"),
                            connection_file=str(Path(job["ipc_dir"]) / "kernel.json"))
    km._kernel_spec = KernelSpec(argv=sandbox.kernel_argv(), display_name="sandboxed python",
                                 language="python", interrupt_mode="message", env={})
    original_write = km.write_connection_file

    def write_connection_file(**kwargs):  # the kernel runs as another user: it must be able to read this file
        original_write(**kwargs)
        os.chmod(km.connection_file, 0o644)

    km.write_connection_file = write_connection_file
    client = CappedClient(nb, km=km, timeout=job["cell_timeout"], startup_timeout=job.get("startup_timeout", 120),
                          interrupt_on_timeout=True, allow_errors=True,
                          error_on_timeout={"ename": "CellTimeoutError", "evalue": "cell timed out"}, record_timing=False,
                          shutdown_kernel="immediate", kernel_name="")
    cells: list[dict] = [{"status": "not run"} for _ in nb.cells]
    started = time.monotonic()
    deadline = started + job["notebook_timeout"]
    died = None
    log = open(Path(job["ipc_dir"]).parent / "kernel.log", "wb")
    try:
        async with client.async_setup_kernel(stdout=log, stderr=log):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    cells[index] = {"status": "ok"}
                    continue
                if not cell.source.strip():
                    cells[index] = {"status": "ok"}
                    continue
                left = deadline - time.monotonic()
                if left <= 1:
                    died = "notebook time limit reached"
                    break
                client.timeout = min(job["cell_timeout"], int(left))
                t0 = time.monotonic()
                client._last_reply = None
                try:
                    await client.async_execute_cell(cell, index, execution_count=index + 1)
                except DeadKernelError:
                    cells[index] = {"status": "died"}
                    died = "kernel died"
                    break
                except CellTimeoutError:
                    cells[index] = {"status": "timeout"}
                    died = "kernel did not answer after a timeout"
                    break
                reply = client._last_reply
                errors = [o for o in cell.outputs if o.get("output_type") == "error"]
                elapsed = time.monotonic() - t0
                if reply is None:
                    cells[index] = {"status": "no reply"}
                elif reply["content"].get("status") == "ok" and not errors:
                    cells[index] = {"status": "ok"}
                else:
                    content = reply["content"]
                    ename = content.get("ename") or (errors[0].get("ename") if errors else "error")
                    status = "timeout" if ename == "CellTimeoutError" or (
                        ename == "KeyboardInterrupt" and elapsed >= client.timeout - 1) else "error"
                    cells[index] = {"status": status, "ename": str(ename)[:200],
                                    "evalue": str(content.get("evalue", ""))[:500]}
                cells[index]["seconds"] = round(elapsed, 2)
                if not await km.is_alive():
                    died = "kernel died"
                    break
    except DeadKernelError:
        died = died or "kernel died"
    except RuntimeError as exc:  # kernel failed to start (sandbox, limits)
        died = died or f"kernel could not run: {exc}"[:300]
    finally:
        try:
            if km.has_kernel:
                await km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001
            pass
        log.close()
        reap(sandbox.uid)
    for index, cell in enumerate(nb.cells):
        if index in client.truncated:
            cells[index]["truncated"] = True
    return {"cells": cells, "died": died, "seconds": round(time.monotonic() - started, 2), "notebook": nb}


def main(argv: list[str] | None = None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    job = json.loads(Path(argv[0]).read_text())
    result = asyncio.run(execute(job))
    nb = result.pop("notebook")
    nbformat.write(nb, job["executed"])
    atomic_write(Path(job["result"]), json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

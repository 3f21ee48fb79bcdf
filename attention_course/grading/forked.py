"""One function in a forked child with a time and a memory limit: what a hostile notebook may make explode or
hang in the trusted grader (reading and scanning it, rendering its feedback page) costs that child only."""

from __future__ import annotations

import os
import resource
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Outcome:
    value: str | None = None  # what the function returned, when it finished
    error: tuple[str, str] | None = None  # (exception type, message) when it raised
    signal: int | None = None  # the signal that ended the child (SIGALRM, SIGKILL: out of time)

    @property
    def timed_out(self) -> bool:
        return self.signal in (signal.SIGALRM, signal.SIGKILL)


def run_forked(fn: Callable[[], str], seconds: int, memory: int) -> Outcome:
    """`fn()` in a forked child whose address space may grow by `memory` bytes and which is ended after
    `seconds` (an alarm; a SIGKILL 10 s later if the alarm is blocked). The child exits without cleanup."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code, data = 1, b""
        try:
            os.close(read_fd)
            with open("/proc/self/statm") as fh:
                mapped = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (mapped + memory, mapped + memory))
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(seconds)
            data = b"V" + fn().encode("utf-8", "replace")
            code = 0
        except BaseException as exc:
            data = b"E" + f"{type(exc).__name__}\0{str(exc)[:400]}".encode("utf-8", "replace")
        try:
            with os.fdopen(write_fd, "wb") as fh:
                fh.write(data)
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + seconds + 10
    chunks = []
    killed = False
    with os.fdopen(read_fd, "rb") as fh:
        while True:  # read as it comes (a large value fills the pipe before the child can exit)
            ready, _, _ = select.select([fh], [], [], 0.2)
            if ready:
                chunk = os.read(fh.fileno(), 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
            elif time.monotonic() > deadline and not killed:  # the alarm did not end it (blocked signal)
                os.kill(pid, signal.SIGKILL)
                killed = True
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if os.WIFSIGNALED(status):
        return Outcome(signal=os.WTERMSIG(status))
    if data[:1] == b"V" and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return Outcome(value=data[1:].decode("utf-8", "replace"))
    if data[:1] == b"E":
        name, _, message = data[1:].decode("utf-8", "replace").partition("\0")
        return Outcome(error=(name, message))
    return Outcome()

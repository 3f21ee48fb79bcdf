"""What one grading run is asked to do (`Options`), and which grader does it (`grader_version`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from attention_course.grading.sandbox import NOTEBOOK_SECONDS, Limits

# the course modules the grader runs besides its own package (the judge's checks, verdicts, markers, leaks)
GRADING_MODULES = ("checks.py", "expect.py", "jupyter_env.py", "leaks.py", "notebooks.py")
# What the benchmark's grading figures were measured with (benchmarks/results.json): a generation, bumped by hand
# when grading changes what `make bench` measures. Saved results never depend on it: see `grader_version`.
# 2: test cells judged outside the kernel; 3: trusted text only, inert feedback; 4: warm kernels
GRADER_GENERATION = "4"


@cache
def grader_version() -> str:
    """A fingerprint of the grading code itself (`attention_course/grading/*.py` and the course modules it
    runs): any change to the grader makes earlier results stale, and a cluster worker must match it."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(here.glob("*.py")) + [here.parent / name for name in GRADING_MODULES]:
        h.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


@dataclass
class Options:
    assignment: str
    jobs: int = 0
    force: bool = False
    trust: set[str] = field(default_factory=set)  # students whose review flags the instructor cleared
    cell_timeout: int | None = None
    notebook_timeout: int = NOTEBOOK_SECONDS
    memory_bytes: int = Limits.memory_bytes  # per sandbox (cgroup)
    disk_bytes: int = Limits.disk_bytes  # writable space per sandbox (its folder, and /tmp)
    progress: bool = True
    feedback: bool = True
    scheduler: str | None = None  # a Dask scheduler's address: grade on that cluster (cluster.py)
    judge_address: str | None = None  # HOST[:PORT] the judge service listens on, reachable from the workers
    tls: dict[str, str | None] | None = None  # {"ca", "cert", "key"}: the Dask client's TLS files (else Dask's)

    def limits(self) -> dict[str, int]:
        """The sandbox's limits (sandbox.Limits fields) for every notebook of this run."""
        return {"memory_bytes": self.memory_bytes, "disk_bytes": self.disk_bytes}

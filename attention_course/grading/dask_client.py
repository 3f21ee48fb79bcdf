"""Connecting to a Dask cluster for a grading run: the scheduler's address and TLS, the judge service's address,
and the preflight of every worker (it can sandbox, it runs the same grading code). What cannot be used is a
`SetupError`: one line for the instructor."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

from attention_course.grading.options import grader_version
from attention_course.grading.records import GradingError

log = logging.getLogger(__name__)

ALLOWED_FAILURES = 2  # a submission that kills this many workers ends as that student's grader error


class SetupError(GradingError):
    """A cluster that cannot be used: one line for the instructor."""


def loopback(address: str) -> bool:
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def security(tls: dict[str, str | None] | None) -> Any:
    """The client's Dask security: explicit --tls-* files, else what Dask's config says
    (DASK_DISTRIBUTED__COMM__TLS__*)."""
    from distributed.security import Security

    if tls and any(tls.values()):
        return Security(
            tls_ca_file=tls.get("ca"),
            tls_client_cert=tls.get("cert"),
            tls_client_key=tls.get("key"),
            require_encryption=True,
        )
    return Security()


def server_context(sec: Any) -> ssl.SSLContext:
    """TLS for the judge service, from the same files as the Dask client's: the cluster's CA must have signed
    the worker's certificate (client authentication required)."""
    if not (sec.tls_ca_file and sec.tls_client_cert):
        raise SetupError(
            "a tls:// scheduler needs the CA file and a certificate (--tls-ca-file, --tls-cert, "
            "--tls-key, or DASK_DISTRIBUTED__COMM__TLS__CA_FILE / __CLIENT__CERT / __CLIENT__KEY)"
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=sec.tls_ca_file)
    ctx.load_cert_chain(sec.tls_client_cert, sec.tls_client_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def connect(
    address: str, tls: dict[str, str | None] | None, wait_workers: float = 60
) -> tuple[Any, Any, list[str], int | None]:
    """A Client on the scheduler, its workers preflighted, and the allowed failures set there (None: the
    scheduler's own); SetupError (one line) when it cannot be used."""
    import dask
    from distributed import Client

    from attention_course.grading.dask_worker import preflight

    for name in ("distributed", "distributed.client", "distributed.comm", "distributed.batched"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    sec = security(tls)
    if address.startswith("tls://") and not sec.tls_ca_file:
        raise SetupError(
            f"{address}: a tls:// scheduler needs --tls-ca-file/--tls-cert/--tls-key "
            "(or DASK_DISTRIBUTED__COMM__TLS__* settings)"
        )
    dask.config.set({"distributed.comm.timeouts.connect": "10s"})
    try:
        client = Client(address, security=sec, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SetupError(
            f"cannot reach the Dask scheduler at {address}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=wait_workers)
        except TimeoutError:
            raise SetupError(f"the Dask scheduler at {address} has no workers (waited {wait_workers:.0f} s)") from None

        def set_failures(dask_scheduler=None):
            dask_scheduler.allowed_failures = ALLOWED_FAILURES
            return ALLOWED_FAILURES

        allowed: int | None = None
        try:
            allowed = client.run_on_scheduler(set_failures)
        except Exception as exc:  # the scheduler keeps its own setting (DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES)
            log.warning("could not set allowed-failures=%d on the scheduler: %r", ALLOWED_FAILURES, exc)
        reports = client.run(preflight)
        mine = grader_version()
        bad = []
        for addr, rep in sorted(reports.items()):
            if rep.get("sandbox"):
                bad.append(f"worker {addr} cannot sandbox: {rep['sandbox']}")
            elif rep.get("version") != mine:
                bad.append(f"worker {addr} runs other grading code ({rep.get('version')}, here {mine})")
        if bad:
            raise SetupError("; ".join(bad) + ": fix or stop these workers, then grade again")
        return client, sec, sorted(reports), allowed
    except BaseException:
        client.close()
        raise


def judge_bind(opts_scheduler: str, judge_address: str | None) -> tuple[str, int]:
    if judge_address:
        host, _, port = judge_address.rpartition(":") if ":" in judge_address else (judge_address, "", "0")
        try:
            return host or "127.0.0.1", int(port or 0)
        except ValueError:
            raise SetupError(f"--judge-address {judge_address!r}: expected HOST or HOST:PORT") from None
    if loopback(opts_scheduler):
        return "127.0.0.1", 0
    raise SetupError(
        f"the scheduler {opts_scheduler} is not on this machine: name the address the workers reach "
        "this machine's judge service at with --judge-address HOST[:PORT] (JUDGE_ADDRESS=...)"
    )

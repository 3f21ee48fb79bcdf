"""No kernel keyrings in a sandbox: a seccomp filter that refuses `add_key`, `request_key` and `keyctl`.

The kernel's key store is per user id, not per namespace: a key a submission adds to its uid's user keyring
would still be there for the next student graded under the same leased uid (red team of 2026-12-08). Nothing a
kernel needs uses keyrings, so the three calls fail with EPERM. The filter also kills a process that makes a
system call of another architecture (i386 `int 0x80` on x86_64, whose numbers differ) and refuses x32 calls.

Standard library only. Used two ways: cold kernels run `python -I -S nokeys.py PROGRAM ARGS...` (it installs the
filter, which survives `execv`, and execs the kernel), and warm kernels call `install()` after dropping their
privileges (template.py). Both need `no_new_privs`, which the sandbox sets first.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import sys

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
EPERM = 1
X32_BIT = 0x40000000
# machine -> (AUDIT_ARCH_*, (add_key, request_key, keyctl))
ARCHES = {
    "x86_64": (0xC000003E, (248, 249, 250)),
    "aarch64": (0xC00000B7, (217, 218, 219)),
}


def program(machine: str | None = None) -> bytes:
    """The filter as `struct sock_filter` records (classic BPF), for this machine's architecture."""
    arch, (add_key, request_key, keyctl) = ARCHES[machine or platform.machine()]

    def op(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    return b"".join(
        [
            op(ld_abs, 0, 0, 4),  # 0: the call's architecture
            op(jeq, 1, 0, arch),  # 1: ours: go on at 3
            op(ret, 0, 0, RET_KILL_PROCESS),  # 2: another architecture's numbering
            op(ld_abs, 0, 0, 0),  # 3: the call's number
            op(jge, 4, 0, X32_BIT),  # 4: an x32 call: refused (9)
            op(jeq, 3, 0, add_key),  # 5
            op(jeq, 2, 0, request_key),  # 6
            op(jeq, 1, 0, keyctl),  # 7
            op(ret, 0, 0, RET_ALLOW),  # 8
            op(ret, 0, 0, RET_ERRNO | EPERM),  # 9
        ]
    )


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Install the filter on this process and all it starts (raises OSError when the kernel refuses)."""
    code = program()
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _Prog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"installing the seccomp filter: {os.strerror(err)}")


if __name__ == "__main__":
    install()
    os.execv(sys.argv[1], sys.argv[1:])

"""The kernel process jupyter_client sees when a kernel is forked from a warm template (template.py, warm.py).

Run on the host as `python -I -S warm_client.py CONTROL_SOCKET` (standard library only, so it starts in
milliseconds): it asks the template for a kernel, handing it this process's stdout and stderr (the kernel's
log), and lives exactly as long as that kernel: it exits with the kernel's exit status, and when it is killed
(jupyter_client's shutdown) its connection closes and the template kills the kernel. SIGINT and SIGTERM are
passed on as an interrupt and a kill.
"""

import signal
import socket
import sys


def main() -> int:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(sys.argv[1])
    socket.send_fds(conn, [b"S"], [1, 2])
    signal.signal(signal.SIGINT, lambda *_: conn.send(b"I"))
    signal.signal(signal.SIGTERM, lambda *_: conn.send(b"K"))
    reply = b""
    while not reply.endswith(b"\n"):
        try:
            part = conn.recv(256)
        except InterruptedError:
            continue
        if not part:
            return 1
        reply += part
    kind, _, value = reply.decode().strip().partition(" ")
    if kind == "X":
        code = int(value)
        return code if code >= 0 else 128 - code
    sys.stderr.write(f"warm kernel: {reply.decode().strip()}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())

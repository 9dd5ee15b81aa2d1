#!/usr/bin/env python3
"""Starts a program and prints the seconds until TEXT first appears in its
output (stdout and stderr together), then ends it and its process group.

bench/boot.sh uses it to time a guest booted without kiln, plain linux.uml or
qemu -kernel, to the serial console's login prompt: the same point kiln's
readiness report marks (the agent reports after multi-user.target, of which
the serial getty is part).

Usage: time_to_text.py TIMEOUT TEXT -- PROGRAM [ARG...]
Exits 0 having printed the seconds, or 1 (with the output's last lines on
stderr) when the program ended or TIMEOUT seconds passed first.
"""
import os
import select
import signal
import subprocess
import sys
import time


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print("usage: time_to_text.py TIMEOUT TEXT -- PROGRAM [ARG...]", file=sys.stderr)
        return 2
    timeout, text, argv = float(sys.argv[1]), sys.argv[2].encode(), sys.argv[4:]
    started = time.monotonic()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    seen = b""
    found = None
    try:
        while found is None:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                break
            ready, _, _ = select.select([child.stdout], [], [], left)
            if not ready:
                break
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:
                break
            seen = (seen + chunk)[-65536:]
            if text in seen:
                found = time.monotonic() - started
    finally:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()
    if found is None:
        tail = seen.decode(errors="replace").splitlines()[-5:]
        print(f"time_to_text: {text.decode()!r} did not appear within {timeout:g} s; last output:", file=sys.stderr)
        for line in tail:
            print("  " + line, file=sys.stderr)
        return 1
    print(f"{found:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

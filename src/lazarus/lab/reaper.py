"""A child subreaper under each lab host's libvirtd: the host's exited qemus are reaped at once.

Used by lab.hosts.start_libvirtd, which runs `python -m lazarus.lab.reaper libvirtd --daemon
...` inside the host's namespaces. Why: libvirtd starts qemu daemonized, so an exiting qemu
is reparented to the nearest subreaper, else to PID 1. On the lab's machines PID 1 is not a
real init and reaps orphans only every second or two, and libvirt's destroy waits until the
qemu pid has vanished (a zombie still counts as alive) while holding the domain's lock. Every
destroy then took 1.6-2 s although qemu exits in milliseconds, and the host's probes (which
list every domain, taking each lock) waited behind it: terminating 30 VMs at once put a
healthy, merely busy host into ERROR and got it fenced (bench/rto.py, docs/benchmarks.md).
Real hosts have an init that reaps at once; this gives a lab host the same.

How: the launcher forks; the child makes itself a subreaper (prctl PR_SET_CHILD_SUBREAPER),
runs the command (libvirtd --daemon, which returns once the daemon is up) and hands its exit
status to the launcher, which exits with it (so callers wait for it as for libvirtd --daemon).
The child then reaps every orphan (libvirtd, its qemus) until none is left. It lives in the
host's namespaces, so a power cut (hosts.kill_all) kills it with the rest of the host.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _reap_all() -> None:
    """Wait for children (adopted orphans included) until there are none left."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m lazarus.lab.reaper COMMAND [ARG...]", file=sys.stderr)
        return 2
    read_end, write_end = os.pipe()
    if os.fork():  # the launcher: report the command's status once it is known
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            status = pipe.read().strip()
        return int(status) if status.lstrip(b"-").isdigit() else 1
    os.close(read_end)
    os.setsid()
    try:
        _become_subreaper()
        code = subprocess.call(argv)
    except OSError as exc:
        print(f"lazarus.lab.reaper: {exc}", file=sys.stderr)
        code = 1
    with os.fdopen(write_end, "wb") as pipe:
        pipe.write(str(code).encode())
    if code == 0:
        _reap_all()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

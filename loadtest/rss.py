"""Resident memory of a process in MiB, read from Linux /proc (no psutil needed)."""
from __future__ import annotations

import os


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of process `pid` (this process by default) in MiB, from /proc/<pid>/statm."""
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

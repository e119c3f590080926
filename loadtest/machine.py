"""The machine a run is on: what it is (CPU, ISA, versions, load), and waiting for it to be quiet."""
from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

import grpc
import psutil

from .settings import log


def wait_for_quiet(limit_s: float, threshold: float = 0.6) -> None:
    """Waits (at most limit_s) until the 1-minute load average drops under `threshold`: other work on the
    machine lowers every absolute number (the ratios within the run much less)."""
    deadline = time.monotonic() + limit_s
    while os.getloadavg()[0] >= threshold and time.monotonic() < deadline:
        log(f"load average {os.getloadavg()[0]:.2f}: waiting for the machine to be quiet")
        time.sleep(10)


def machine() -> dict:
    """CPU model, cores, memory, ISA flags, library versions, kernel and load average of this machine."""
    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
        flags = re.search(r"flags\s*:\s*(.*)", cpuinfo).group(1)
    except (OSError, AttributeError):
        model = None
    import onnxruntime
    return {"cpu": model.group(1) if model else platform.processor(), "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
            "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
                    if f in flags.split()],
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "grpcio": grpc.__version__,
            "kernel": platform.release(), "load_avg_at_start": os.getloadavg()}

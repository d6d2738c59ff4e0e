"""Helpers shared by the benchmark scripts: machine description and RESULTS.md sections."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import numpy as np
import torch


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return ", ".join(f"{i.get('internal_api')} {i.get('num_threads')}" for i in threadpool_info())


def machine_info(threads: int) -> dict:
    """CPU model and cores, thread settings, software versions and the load average, as ``{label: text}``."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "CPU": f"{model} ({os.cpu_count()} cores)",
        "threads": f"torch {torch.get_num_threads()}, BLAS: {blas_info()} (requested {threads})",
        "software": f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}",
        "load average at start": load,
    }


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section of ``path`` that starts with the line ``heading`` (up to the next ``## ``
    heading) by ``section``, or append ``section``."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        text = "".join(lines[:start]) + section + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.write_text(text.rstrip("\n") + "\n")

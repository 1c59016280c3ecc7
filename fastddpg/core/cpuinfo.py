"""The CPU this process runs on, as Linux's /proc/cpuinfo describes its first processor: vendor, family, model,
name and instruction-set flags.

Two uses: naming the CPU next to every figure fastddpg reports (`cpu_model`; a VM's name alone may not tell CPUs
apart, e.g. "AMD EPYC" for Zen 3, Zen 4 and Zen 5, whose figures differ) and choosing code paths by what the CPU
has (`fastddpg.learning.cpu_matmul`: AMD with AVX-512)."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterable
from typing import NamedTuple

CPUINFO = "/proc/cpuinfo"


class CpuInfo(NamedTuple):
    """The first processor's fields ("" and an empty set where /proc/cpuinfo does not give them)."""

    vendor: str
    family: str
    model: str
    name: str
    flags: frozenset[str]


def first_block(lines: Iterable[str]) -> dict[str, str]:
    """The ``key: value`` fields of the first block of ``lines`` (/proc/cpuinfo's first processor; all of lscpu's
    output, which has one), up to the blank line that ends it."""
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep:
            if fields:  # the blank line after the first processor's block
                break
            continue
        fields.setdefault(key.strip(), value.strip())
    return fields


def read_cpuinfo(path: str = CPUINFO) -> CpuInfo:
    """`CpuInfo` of the first processor in ``path``; all empty where it cannot be read (not Linux)."""
    try:
        with open(path) as f:
            fields = first_block(f)
    except OSError:
        fields = {}
    return CpuInfo(fields.get("vendor_id", ""), fields.get("cpu family", ""), fields.get("model", ""),
                   fields.get("model name", ""), frozenset(fields.get("flags", "").split()))


def lscpu_model_name() -> str:
    """``lscpu``'s "Model name" ("" without lscpu): where /proc/cpuinfo has none (ARM), lscpu names the core from its
    own tables ("Neoverse-N1")."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return first_block(out.splitlines()).get("Model name", "")


def cpu_model(info: CpuInfo | None = None) -> str:
    """The CPU's name with its family and model where /proc/cpuinfo gives them ("AMD EPYC (family 25 model 1)");
    without a name there, ``lscpu``'s, else ``platform.processor()``, else the machine type ("aarch64")."""
    info = read_cpuinfo() if info is None else info
    name = info.name or lscpu_model_name() or platform.processor() or platform.machine()
    if info.family and info.model:
        name += f" (family {info.family} model {info.model})"
    return name

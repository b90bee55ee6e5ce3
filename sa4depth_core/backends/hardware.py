"""What the CPU offers for reduced-precision inference, read from the kernel's CPU flags."""
from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """Flags of the first CPU in /proc/cpuinfo (x86 'flags', Arm 'Features'); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(flags: frozenset | None = None) -> str:
    """Name of the CPU's bf16 matrix unit ("AMX" or "AVX512-BF16"), or "" when it has none.

    Without one, bf16 is emulated with conversions and runs slower than fp32, so bf16 is only
    ever chosen where this is non-empty.
    """
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return ""


"""Refuse, with the numbers, a data set that cannot fit in memory (rather than swap or be killed)."""
from __future__ import annotations

import math
import os

# Share of the machine's physical memory one data set may take.
MAX_SHARE = 0.8


def physical_memory_bytes() -> int | None:
    """The machine's RAM in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover  (not POSIX)
        return None


def check_fits_in_memory(what: str, count: int, shape: tuple[int, ...], bytes_per_value: int = 4) -> None:
    """Raise ValueError if ``count`` tensors of ``shape`` (float32 by default) would need more than
    :data:`MAX_SHARE` of the physical memory; the message gives both sizes in GB."""
    need = count * math.prod(shape) * bytes_per_value
    have = physical_memory_bytes()
    if have is not None and need > MAX_SHARE * have:
        raise ValueError(f"{what}: {count:,} images of {'x'.join(map(str, shape))} float32 need {need / 1e9:.1f} GB "
                         f"in memory, more than {MAX_SHARE:.0%} of this machine's {have / 1e9:.1f} GB; "
                         "ask for fewer with n=...")

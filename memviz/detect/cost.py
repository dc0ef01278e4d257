"""What a detector costs, measured while it runs: seconds, UNet calls and peak memory.

``Meter`` is a context manager; meters nest (the sampler's meter holds the per-step meters of
the stepwise detectors), and every active meter sees what happens inside it.
- calls: UNet forward calls, read from the model's counter (``DiffusionModel.unet_calls``, counted
  where every call goes: ``DiffusionModel.output``); a batched conditional-and-unconditional pair
  is one call, as in the papers' cost counts. Backward passes are not counted; the registry's
  cost formula states them.
- peak memory: above the memory in use when the meter started. CUDA: ``max_memory_allocated``.
  CPU: the kernel's resident high-water mark (VmHWM of /proc/self/status), reset between
  segments through /proc/self/clear_refs (Linux >= 4.0); elsewhere NaN (not measured).
Written by hand because no library meters nested spans of one process this way (tracemalloc
does not see torch's allocations, and psutil only polls the current RSS).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

_ACTIVE: list["Meter"] = []
_STATUS, _CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _rss_mb(field: str) -> float:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _reset_peak() -> bool:
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


class Meter:
    """Seconds, UNet forward calls and peak memory (MiB above the start) of a span of work.

    Args:
        model: the ``DiffusionModel`` whose UNet calls are counted (None: count nothing).

    Example:
        >>> with Meter(model) as m:
        ...     model.eps(x, 0.5)
        >>> m.calls, m.seconds, m.peak_mb
    """

    def __init__(self, model=None):
        self.model, self.calls, self.seconds, self.peak_mb = model, 0, 0.0, 0.0

    def __enter__(self) -> "Meter":
        self._close_segment()
        self._cuda = self.model is not None and self.model.device.type == "cuda"
        self._base = torch.cuda.memory_allocated() if self._cuda else _rss_mb("VmRSS")
        self._peak_ok = self._cuda or (_reset_peak() and not math.isnan(self._base))
        self._calls0 = getattr(self.model, "unet_calls", 0)
        _ACTIVE.append(self)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._start
        self._close_segment()
        _ACTIVE.remove(self)
        self.calls += getattr(self.model, "unet_calls", 0) - self._calls0
        if not self._peak_ok:
            self.peak_mb = math.nan

    @staticmethod
    def _close_segment() -> None:
        """Give every active meter the peak of the segment that ends now, and start a new one."""
        if not _ACTIVE:
            return
        for m in _ACTIVE:
            if m._cuda:
                m.peak_mb = max(m.peak_mb, (torch.cuda.max_memory_allocated() - m._base) / 2**20)
            else:
                m.peak_mb = max(m.peak_mb, _rss_mb("VmHWM") - m._base)
        if any(m._cuda for m in _ACTIVE):
            torch.cuda.reset_peak_memory_stats()
        _reset_peak()

"""Where the network runs and at what precision: one rule for training and separation.

``precision="auto"`` means bfloat16 on a CPU that has native bf16 matrix units (Intel AMX, or AVX-512
BF16), float32 on other CPUs, and CUDA's own autocast on a GPU. On an AMX CPU a bf16 GEMM runs about
4.6x faster than a float32 one (benchmarks/bench_train_step.py prints the rate of the machine it runs on);
without those units bf16 is emulated and slower than float32, hence the check.

Only the network's matrix products run in bf16 (``torch.autocast``); losses, masks, k-means, the
normalisation of embeddings and anything accumulated stay float32.
"""

from __future__ import annotations

import contextlib
import functools

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; any other name as ``torch.device`` reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (``amx_bf16`` or ``avx512_bf16`` in /proc/cpuinfo).

    Linux only reads the flags; elsewhere we ask oneDNN through torch's own capability string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            flags = handle.read()
        return "amx_bf16" in flags or "avx512_bf16" in flags
    except OSError:
        capability = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")())
        return "AMX" in capability.upper()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` on a CPU with native bf16, ``"fp32"`` on other CPUs, ``"amp"`` on CUDA.

    An explicit ``"bf16"`` or ``"fp32"`` is kept on the CPU; on CUDA both mean what they say as well."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "amp"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None: plain float32)."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "amp" and device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def inference_precision(precision: str, device: str | torch.device = "auto") -> str:
    """The precision separation runs at, resolved: ``"bf16"`` or ``"fp32"`` (what rows record).

    ``"auto"``: bf16 on a CPU with native bf16 units; float32 on other CPUs and on CUDA (amp there is not
    measured for separation, so it stays as it was)."""
    resolved = resolve_precision(precision, resolve_device(str(device)))
    return "fp32" if resolved == "amp" else resolved

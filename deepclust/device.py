"""Where the network runs and at what precision: one rule for training and separation.

``precision="auto"`` means bfloat16 on a CPU that has native bf16 matrix units (Intel AMX, or AVX-512
BF16), float32 on other CPUs, and CUDA's own autocast on a GPU. On an AMX CPU a bf16 GEMM runs about
4.6x faster than a float32 one (benchmarks/bench_train_step.py prints the rate of the machine it runs on);
without those units bf16 is emulated and slower than float32, hence the check.

Only the network's matrix products run in bf16 (``torch.autocast``); losses, masks, k-means, the
normalisation of embeddings and anything accumulated stay float32.

Separation also takes ``"int8"`` (an explicit choice, CPU only, never training and never ``auto``): the LSTM
and linear layers hold int8 weights and quantise their inputs on the fly, per batch (dynamic quantisation,
``quantize_for_inference``). Measured on the shipped model (benchmarks/RESULTS.md, issue 17): within 0.1 dB
of float32 on held-out real mixtures (mask head +0.01 dB, k-means -0.09 dB), 1.1x bf16's speed on long
recordings and 2.1x on folders of short files (whose packed sequences bf16 does not speed up). Its price: the
activation scale is the batch's, so an input's masks depend on the inputs it shares a batch with (mean
change 0.003, about 10x bf16's rounding).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings

import torch

PRECISIONS = ("auto", "fp32", "bf16")
INFERENCE_PRECISIONS = (*PRECISIONS, "int8")  # what separation accepts; training takes PRECISIONS


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
    """The precision separation runs at, resolved: ``"bf16"``, ``"fp32"`` or ``"int8"`` (what rows record).

    ``"auto"``: bf16 on a CPU with native bf16 units; float32 on other CPUs and on CUDA (amp there is not
    measured for separation, so it stays as it was). ``"int8"``: dynamic int8 quantisation, CPU only."""
    if precision == "int8":
        if resolve_device(str(device)).type != "cpu":
            raise ValueError(f"precision 'int8' runs on the CPU only (dynamic quantisation), not on {device}")
        return "int8"
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {INFERENCE_PRECISIONS}, got {precision!r}")
    resolved = resolve_precision(precision, resolve_device(str(device)))
    return "fp32" if resolved == "amp" else resolved


def quantize_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose ``nn.LSTM`` and ``nn.Linear`` layers hold int8 weights and quantise their
    inputs on the fly (``torch.ao.quantization.quantize_dynamic``); the rest stays float32. The original is
    left as it is (a ``LoadedModel``'s module may serve other separators)."""
    with warnings.catch_warnings():
        # torch announces that eager-mode quantisation moves to torchao: nothing a user of ours can act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu().eval(),
                                                      {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)

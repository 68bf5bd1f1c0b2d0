"""Where the network runs and at what precision: one rule for training and separation.

``precision="auto"`` means bfloat16 on a CPU that has native bf16 matrix units (Intel AMX, or AVX-512
BF16) and whose torch build runs the network in bf16 (``bf16_support``: one tiny forward, cached), float32 on
other CPUs, and CUDA's own autocast on a GPU. On an AMX CPU a bf16 GEMM runs about
4.6x faster than a float32 one (benchmarks/bench_train_step.py prints the rate of the machine it runs on);
without those units bf16 is emulated and slower than float32, or (an AVX2-only CPU) oneDNN has no bf16 LSTM
at all, hence the check. An explicit ``"bf16"`` or ``"int8"`` that this machine cannot run is refused before
any input (``PrecisionUnavailableError``, exit status 2 on the command line), never blamed on one.

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
import logging
import platform
import warnings
from dataclasses import dataclass

import torch

from deepclust.faults.errors import RunSettingError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
INFERENCE_PRECISIONS = (*PRECISIONS, "int8")  # what separation accepts; training takes PRECISIONS


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; any other name as ``torch.device`` reads it (a name it
    cannot read is a ``RunSettingError``). Whether that device is here is ``usable_device``'s question: a driver
    may name the GPU its workers have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise RunSettingError(
            f"device {name!r} is not a device name torch knows (auto, cpu, cuda, cuda:1, mps, ...)"
        ) from None


def usable_device(name: str) -> torch.device:
    """``resolve_device``, refusing (``RunSettingError``, before any input) a CUDA device this process cannot use:
    a CPU-only torch build, no GPU visible, or an index past the last GPU."""
    device = resolve_device(name)
    if device.type == "cuda":
        build = "" if torch.version.cuda else f" (torch {torch.__version__} is a CPU-only build)"
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise RunSettingError(f"device {name!r}: no CUDA GPU is usable here{build}; use --device cpu or auto")
        if (device.index or 0) >= count:
            raise RunSettingError(f"device {name!r}: this machine has {count} CUDA GPU(s), cuda:0 .. cuda:{count - 1}")
    return device


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    """/proc/cpuinfo, read once ("" where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (``amx_bf16`` or ``avx512_bf16`` in /proc/cpuinfo).

    Without /proc/cpuinfo we ask oneDNN through torch's own capability string. The flags say what the silicon
    has, not what this torch build will run: ``bf16_support`` asks the build itself."""
    flags = _cpuinfo()
    if flags:
        return "amx_bf16" in flags or "avx512_bf16" in flags
    capability = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")())
    return "AMX" in capability.upper()


def cpu_name() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (``platform.processor()`` elsewhere), for messages."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "this CPU"


@dataclass(frozen=True)
class PrecisionSupport:
    """What a probe found: whether the network runs at a precision here (``runs``), whether that is native
    (fast: AMX / AVX-512 BF16 for bf16), and in plain words why not (``reason``; "" when it runs)."""

    runs: bool
    native: bool
    reason: str = ""


def _probe_network(model: torch.nn.Module, dtype: torch.dtype | None) -> None:
    """One forward of ``model`` on a tiny batch, under autocast to ``dtype`` when given; raises what torch raises.

    A bidirectional LSTM over an unpacked batch: the oneDNN primitive a one-window input takes, the one a CPU
    without bf16 support has no descriptor for ("could not create a primitive descriptor for the LSTM")."""
    inputs = torch.randn(2, 6, 8)
    with torch.no_grad(), autocast(torch.device("cpu"), dtype):
        model(inputs)


class _TinyNetwork(torch.nn.Module):
    """The network's layer kinds in miniature: a BLSTM, then a linear layer."""

    def __init__(self):
        super().__init__()
        self.blstm = torch.nn.LSTM(8, 8, batch_first=True, bidirectional=True)
        self.linear = torch.nn.Linear(16, 4)

    def forward(self, inputs):
        return self.linear(self.blstm(inputs)[0])


@functools.lru_cache(maxsize=1)
def bf16_support() -> PrecisionSupport:
    """Whether this CPU and torch build run the network in bfloat16, found by running it once (cached).

    Reading /proc/cpuinfo is not enough: a build, a hypervisor or ``ONEDNN_MAX_CPU_ISA`` can hide the
    instructions the flags list, and oneDNN then has no bf16 LSTM at all (it raises, on an AVX2-only CPU)."""
    try:
        _probe_network(_TinyNetwork().eval(), torch.bfloat16)
    except RuntimeError as error:
        # oneDNN's message, without its advice to rerun with ONEDNN_VERBOSE (nothing a user of ours needs).
        said = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". Run workload")[0]
        return PrecisionSupport(
            False, False, f"{cpu_name()} cannot run the network in bfloat16 (torch {torch.__version__}: {said})"
        )
    return PrecisionSupport(True, cpu_has_native_bf16())


@functools.lru_cache(maxsize=1)
def int8_support() -> PrecisionSupport:
    """Whether this torch build has a quantised engine that runs the int8 network here (cached)."""
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        return PrecisionSupport(
            False,
            False,
            f"torch {torch.__version__} on {cpu_name()} has no quantised engine (int8 needs fbgemm, x86 or onednn)",
        )
    try:
        _probe_network(quantize_for_inference(_TinyNetwork()), None)
    except (RuntimeError, NotImplementedError, AssertionError) as error:
        return PrecisionSupport(
            False,
            False,
            f"{cpu_name()} cannot run the int8 network (torch {torch.__version__}: {str(error).strip()[:200]})",
        )
    return PrecisionSupport(True, True)


class PrecisionUnavailableError(RunSettingError):
    """An explicit precision this CPU cannot run: the run stops before any input (exit status 2)."""


def require_precision(precision: str) -> None:
    """Refuse an explicit ``bf16`` or ``int8`` (on the CPU) this machine cannot run, in one plain line."""
    support = {"bf16": bf16_support, "int8": int8_support}.get(precision)
    if support is None:
        return
    found = support()
    if not found.runs:
        raise PrecisionUnavailableError(
            f"--precision {precision}: {found.reason}; use --precision auto (picks what this CPU runs best) or fp32"
        )
    if precision == "bf16" and not found.native:
        _warn_emulated_bf16()


@functools.lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    """Once per process, however many times the precision is resolved."""
    log.warning(
        "bfloat16 is emulated on %s (no AMX or AVX-512 BF16): expect it slower than fp32 "
        "(--precision auto picks fp32 here)",
        cpu_name(),
    )


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` where the CPU runs bf16 natively, ``"fp32"`` on other CPUs, ``"amp"`` on CUDA.

    An explicit ``"bf16"`` or ``"fp32"`` is kept; on the CPU an explicit ``"bf16"`` it cannot run raises
    ``PrecisionUnavailableError`` (a setting of the run, found before any input)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        if device.type == "cpu":
            require_precision(precision)
        return precision
    if device.type == "cuda":
        return "amp"
    if device.type != "cpu":
        return "fp32"
    support = bf16_support()
    return "bf16" if support.runs and support.native else "fp32"


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
            raise RunSettingError(f"--precision int8 runs on the CPU only (dynamic quantisation), not on {device}")
        require_precision("int8")
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
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).cpu().eval(), {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8
        )

"""What the command builders share: the runner seam (``Runners``), exit codes, running a stage with its progress on
stderr, the flags several commands take, and ``default_of`` (a flag's default read from the library call that owns
it, where no typed config does)."""

from __future__ import annotations

import argparse
import inspect
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from deepclust import storage

EXIT_CIRCUIT_OPEN = 3  # the job stopped itself (device fault, or too many failures in a row)
EXIT_TEMPFAIL = 75  # sysexits' EX_TEMPFAIL: inputs hit transient faults; run again to finish them
# A fault of the run, not of an input (deepclust.faults.errors.RunFaultError: a full disk, a damaged manifest, a network
# that fails on any input); 2 (a usage error) when a setting is refused before any input.
EXIT_RUN_FAULT = 4


@dataclass(frozen=True)
class Runners:
    """The Prefect paths of the command line, supplied from above the library (``deepclust.flows.cli.main``, the
    ``deepclust`` console script); the library itself never imports ``flows/`` or Prefect.

    ``reproduce(config, max_workers=, log=, history_url=, regression_margin_db=) -> run record``: the recipe
    through the ``reproduce`` flow (``deepclust reproduce`` / ``demo`` without ``--no-prefect``).
    ``separate_archive_flow(model_url, input_url, out_url, config, dask_address=, max_workers=) -> summary``: the
    archive job (``config``: its ``ArchiveJobConfig``, whole) through the ``separate-archive`` flow (``deepclust
    separate --prefect`` / ``--dask-address``).
    Without runners (``python -m deepclust``), reproduce runs the stages by hand and ``--prefect`` is refused.
    """

    reproduce: Callable[..., dict]
    separate_archive_flow: Callable[..., dict]


def default_of(func: Callable, name: str):
    """The default of ``func``'s parameter ``name``: for a flag whose default is owned by a library call's signature
    (no typed config holds it), so that the flag repeats no value; a missing name or default raises."""
    default = inspect.signature(func).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{func.__qualname__}'s parameter {name!r} has no default")
    return default


def number_list(kind: type) -> Callable[[str], tuple]:
    """An argparse ``type`` for a comma-separated list (``2,3``, ``3,1``): a tuple of ``kind``, or argparse's usage
    error naming the item it could not read (exit 2) instead of a traceback. An empty text is the empty tuple."""

    def parse(text: str) -> tuple:
        values = []
        for item in filter(None, (item.strip() for item in text.split(","))):
            try:
                values.append(kind(item))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{item!r} is not a number of type {kind.__name__} (a comma-separated list such as 2,3)"
                ) from None
        return tuple(values)

    return parse


@contextmanager
def settings_refused_plainly() -> Iterator[None]:
    """Wrap the building of a command's configs from its flags: a value a config refuses (its ``ValueError``, e.g.
    a weight outside [0, 1]) is a setting of the run, so it stops the command in one plain line with exit 2
    (``RunSettingError``), never a traceback."""
    from deepclust.faults.errors import RunFaultError, RunSettingError

    try:
        yield
    except RunFaultError:
        raise
    except ValueError as error:
        raise RunSettingError(str(error)) from None


def to_stderr(message: str) -> None:
    """Progress and notes go to stderr; stdout holds what a script reads (URLs, tables)."""
    print(message, file=sys.stderr)


def run_stage_printing_url(plan) -> str:
    """Run a stage through the one driver (progress on stderr) and print its manifest's URL."""
    from deepclust.pipeline.driver import run_stage

    url = run_stage(plan, log=to_stderr)
    print(storage.absolute(url))
    return url


def model_or_pretrained(model: str | None) -> str:
    """The user's model file, or the shipped real-speech model (deepclust/pretrained)."""
    if model:
        return model
    from deepclust import pretrained

    pretrained.load()  # a clear error now if the installation lacks it
    print(f"model: the shipped real-speech model ({pretrained.path()})", file=sys.stderr)
    return pretrained.path()


def model_overrides(p) -> None:
    """``--emb-dim``, ``--hidden``, ``--layers``: ``ModelConfig`` fields over the preset's values."""
    p.add_argument("--emb-dim", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--layers", type=int)


def model_config(args):
    """``--preset`` with the ``--emb-dim/--hidden/--layers`` overrides given on the command line."""
    from deepclust.model.blstm import ModelConfig

    overrides = {
        k: v for k, v in (("emb_dim", args.emb_dim), ("hidden", args.hidden), ("layers", args.layers)) if v is not None
    }
    return ModelConfig.preset(args.preset, **overrides)


def precision_arguments(p, config) -> None:
    """``--precision`` and ``--compile``, read by training (and ``--precision`` by separation)."""
    p.add_argument(
        "--precision",
        default=config.precision,
        choices=["auto", "fp32", "bf16"],
        help="auto: bfloat16 on a CPU with AMX or AVX-512 BF16 that runs it, float32 on other CPUs, amp "
        "on CUDA; bf16 on a CPU that cannot run it (AVX2 only) is refused before any data (exit 2)",
    )
    if hasattr(config, "compile"):
        p.add_argument(
            "--compile",
            default=config.compile,
            choices=["auto", "on", "off"],
            help="torch.compile the heads and losses (auto: runs of 1,000 steps or more)",
        )

"""The archive job's settings in one frozen config, ``ArchiveJobConfig``: ``deepclust separate`` builds it once from its
flags, the ``separate-archive`` Prefect flow takes it as its ``config`` parameter (a deployment gives it as a dict),
and the job (``deepclust.archive.separate_archive``) runs with it. Its defaults are the command's defaults
(``tests/test_cli_flags.py``); where the job runs (the runner, its workers) is not part of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deepclust.faults.errors import RunSettingError
from deepclust.faults.transient import RETRY_BUDGET_SECONDS
from deepclust.pipeline.plan import JsonableConfig
from deepclust.separation.inputs import MIXTURE_SPLITS
from deepclust.separation.windows import WindowConfig
from deepclust.storage.lock import FolderLock

FILES_PER_BATCH = 8  # inputs per manifest commit (and per Prefect task)
MAX_CONSECUTIVE_FAILURES = 50  # failed inputs in a row that open the circuit breaker (a lost mount, a bad model)


@dataclass(frozen=True)
class ArchiveJobConfig(JsonableConfig):
    """How one archive job separates and how it guards itself.

    n_speakers: sources per input (a mixture manifest's rows know their own).
    files_per_batch: inputs per manifest commit, and per Prefect task or worker batch.
    window: how long recordings are cut (recorded in every row's settings).
    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    kmeans: "auto" (batched torch on CUDA, scikit-learn on CPU), "torch" or "sklearn".
    inference: "auto" (what the model file names for K, else a Chimera++ model's mask head, else k-means), "mask",
        "kmeans", "soft-kmeans" or "blend" (``deepclust.separation.separator.Separator``).
    precision: "auto" (bf16 on a CPU with AMX / AVX-512 BF16), "fp32", "bf16" or "int8"; rows record the resolved one.
    channel: separate this channel (counted from 1) of multi-channel inputs; None: their mean, or the loudest
        channel when the mean cancels (``deepclust.audio.downmix``).
    splits: which splits of a mixture manifest to separate (None: all).
    retry_seconds: how long transient faults are retried (backoff 1 s, 2 s, 4 s ... up to a minute apart): a batch's
        before its inputs are recorded as ``transient`` for the next run, and the job's own store calls (listing,
        the lock, commits, compaction) before the run stops.
    stale_minutes: another run's lock whose heartbeat is older than this is taken over.
    break_lock: take ``out/.lock`` even from a live-looking owner (you know it is gone).
    max_consecutive_failures: failed inputs in a row that stop the run (the circuit breaker).
    listen: inputs of this run drawn for a spot-check page, ``out/.listen/index.html`` (0: no page).
    """

    n_speakers: int = 2
    files_per_batch: int = FILES_PER_BATCH
    window: WindowConfig = field(default_factory=WindowConfig)
    device: str = "auto"
    kmeans: str = "auto"
    inference: str = "auto"
    precision: str = "auto"
    channel: int | None = None
    splits: tuple[str, ...] | None = MIXTURE_SPLITS
    retry_seconds: float = RETRY_BUDGET_SECONDS
    stale_minutes: float = FolderLock.STALE_MINUTES
    break_lock: bool = False
    max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES
    listen: int = 0

    def __post_init__(self):
        # Each refused before any input: one plain line and exit 2 on the command line, never a traceback mid-run
        # or a model blamed for a setting.
        if self.channel is not None and self.channel < 1:
            raise RunSettingError(f"channel counts channels from 1, got {self.channel}")
        at_least = {"n_speakers": 1, "files_per_batch": 1, "max_consecutive_failures": 1, "listen": 0}
        for name, least in at_least.items():
            if getattr(self, name) < least:
                raise RunSettingError(f"{name} must be at least {least}, got {getattr(self, name)}")
        if self.retry_seconds < 0 or self.stale_minutes <= 0:
            raise RunSettingError(
                f"retry_seconds must be >= 0 and stale_minutes > 0, got {self.retry_seconds} and {self.stale_minutes}"
            )

"""Dynamic-mixing training as several data-parallel processes on one machine (``train-dynamic --processes N``).

Measured here (benchmarks/RESULTS.md, stop 24): on this 2-core CPU two one-thread processes trained
8,614 frames/s against 9,388 for one process with two threads, so on 2 cores one process stays the default; the
option is for machines where threads scale worse than processes. Each process draws its own
batches (the rank is part of the batch seed; rank 0's are the single-process run's), DistributedDataParallel
averages the gradients over gloo after every backward pass, so the effective batch is ``N x --batch-size``, and
only rank 0 writes files. The processes meet through a file store in a private temporary folder (no port to
choose); if one fails, the others are stopped and the error names the rank.
"""

from __future__ import annotations

import logging
import os
import tempfile

import torch


def train_dynamic_on_processes(processes: int, threads_per_process: int | None = None, **arguments) -> dict:
    """``train_dynamic(**arguments)`` as ``processes`` data-parallel processes; returns rank 0's result.

    ``threads_per_process``: torch threads in each (default: the machine's cores shared out, at least one).
    With ``processes=1`` this is ``train_dynamic`` in this process.
    """
    from deepclust.training.dynamic_train import train_dynamic

    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if processes == 1:
        return train_dynamic(**arguments)
    if arguments.get("progress") is not None:
        raise ValueError("a progress callback cannot cross into the training processes: use logging")
    threads = threads_per_process or max(1, (os.cpu_count() or 1) // processes)
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="deepclust-ddp-") as folder:
        results = mp.get_context("spawn").SimpleQueue()
        try:
            mp.start_processes(
                _rank_main,
                args=(
                    processes,
                    os.path.join(folder, "store"),
                    threads,
                    arguments,
                    results,
                    logging.getLogger("deepclust").level,
                ),
                nprocs=processes,
                join=True,
                start_method="spawn",
            )
        except mp.ProcessRaisedException as error:
            raise RuntimeError(
                f"data-parallel training failed in process {error.error_index} of {processes}: "
                f"{str(error).strip().splitlines()[-1]}"
            ) from error
        except mp.ProcessExitedException as error:
            raise RuntimeError(
                f"data-parallel training process {error.error_index} of {processes} died "
                f"(exit code {error.exit_code}); the others were stopped"
            ) from error
        reports = [results.get() for _ in range(processes)]
    by_rank = {report["rank"]: report for report in reports}
    return {**by_rank[0]["result"], "parameter_checksums": [by_rank[r]["checksum"] for r in range(processes)]}


def _rank_main(rank: int, world_size: int, store: str, threads: int, arguments: dict, results, log_level: int) -> None:
    """One process: join the group, train, report this rank's parameter checksum (rank 0 also its result)."""
    import torch.distributed as dist

    from deepclust.training.distributed import TorchDistributedReplicas, parameter_checksum
    from deepclust.training.dynamic_train import train_dynamic

    if rank == 0 and log_level and log_level <= logging.INFO:  # the epoch lines, as the command line shows them
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logging.getLogger("deepclust").addHandler(handler)
        logging.getLogger("deepclust").setLevel(log_level)
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        replicas = TorchDistributedReplicas(torch.device("cpu"))
        result = train_dynamic(**arguments, replicas=replicas)
        checksum = parameter_checksum(replicas.trained.module)
        replicas.barrier()
    finally:
        dist.destroy_process_group()
    results.put({"rank": rank, "checksum": checksum, "result": result if rank == 0 else None})

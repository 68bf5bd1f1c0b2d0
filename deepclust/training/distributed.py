"""Data-parallel training with torch.distributed: one process per CPU socket share or per GPU.

    torchrun --nproc-per-node 2 -m deepclust.training.distributed --features FEATURES/manifest.parquet --out DIR
    torchrun --nnodes 2 --node-rank R --master-addr HOST --nproc-per-node 8 -m deepclust.training.distributed ...

Every process runs ``deepclust.training.from_features.train`` with a ``Replicas`` hook: the network is wrapped
in ``DistributedDataParallel`` (gradients averaged over processes after every backward pass: gloo on
CPU, nccl on CUDA), each process trains on its own share of the "tr" utterances (every ``world_size``-th
one of the epoch's seeded order, so the shares are disjoint), validation losses and epoch times are
averaged so every process takes the same early-stopping decisions, and only rank 0 writes ``model.pt``,
``checkpoints/last.pt`` and ``history.csv`` (the same files as single-process training; ``model.pt``
loads with ``deepclust.model.load_model``). Each process also writes ``ranks/rank-<r>.json``: its
steps, the utterances it trained on and a checksum of its final parameters (equal on every rank, as
DDP keeps the replicas in sync).

``--batch-size`` and ``--steps-per-epoch`` are per process: the effective batch is ``world_size`` times
larger. Every process reads every training shard (and keeps its share), and evaluates the whole
validation set: simple, and cheap next to the network on the sizes this recipe trains.

Across several nodes, ``--out`` must be storage every node sees (a shared file system or ``s3://``):
on resume and at the curriculum switch every rank reloads the checkpoint written by rank 0, and ranks
that cannot read it would drift apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import defaultdict

import torch
import torch.distributed as dist

from deepclust import storage
from deepclust.model.blstm import ModelConfig
from deepclust.training.config import TrainConfig
from deepclust.training.from_features import train
from deepclust.training.replicas import Replicas


def parameter_checksum(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in order: equal only when the replicas are bit-identical."""
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class TorchDistributedReplicas(Replicas):
    """``Replicas`` over an initialised default process group; remembers the wrapped network."""

    def __init__(self, device: torch.device):
        # Not the dataclass __init__: it would set the default callables on the instance, over these methods.
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.device = device
        self.trained = None
        self.seen = defaultdict(list)  # item-order seed -> mixture ids this rank trained on

    def wrap(self, model):
        """The network in ``DistributedDataParallel`` (on this process's GPU under CUDA), kept as ``trained``."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.trained = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return self.trained

    def uneven(self, trained):
        """DDP's ``join`` context for an epoch, so that processes may run out of batches at different steps."""
        return trained.join()  # a process out of batches shadows the others' gradient all-reduces

    def mean(self, value: float) -> float:
        """``value`` averaged over all processes (on the GPU under nccl, which reduces CUDA tensors only)."""
        tensor = torch.tensor(
            [float(value)], dtype=torch.float64, device=self.device if dist.get_backend() == "nccl" else "cpu"
        )
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def barrier(self) -> None:
        """Wait until every process gets here."""
        dist.barrier()

    def shard(self, items):
        """This rank's share of ``items`` (``Replicas.shard``), recording the mixture ids it trains on in ``seen``."""
        return self._record(super().shard(items))

    def _record(self, items):
        record = self.seen[len(self.seen)]
        for item in items:
            record.append(item.get("mixture_id"))
            yield item


def init_process_group(device: str = "auto") -> torch.device:
    """Join torchrun's process group (env:// variables): nccl on ``cuda:LOCAL_RANK`` ("auto" with CUDA, or
    "cuda"), else gloo on the CPU. Returns this process's device."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cuda":
        local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=local)
        return local
    dist.init_process_group("gloo")
    return torch.device("cpu")


def train_distributed(
    feature_manifest_url: str,
    out_url: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    device: torch.device,
    resume: bool = True,
) -> dict:
    """``train`` in every process of an initialised process group; see the module docstring."""
    replicas = TorchDistributedReplicas(device)
    config = TrainConfig.from_dict({**train_config.to_dict(), "device": str(device)})
    result = train(feature_manifest_url, out_url, model_config, config, resume=resume, replicas=replicas)
    record = {
        "rank": replicas.rank,
        "world_size": replicas.world_size,
        "backend": dist.get_backend(),
        "device": str(device),
        "epochs": result["epochs"],
        "global_step": result["global_step"],
        "best_val_loss": result["best_val_loss"],
        "parameter_checksum": parameter_checksum(replicas.trained.module),
        "trained_on": {str(k): v for k, v in replicas.seen.items()},
    }
    storage.write_json(record, storage.join(out_url, "ranks", f"rank-{replicas.rank}.json"))
    replicas.barrier()
    return {**result, "rank": replicas.rank, "world_size": replicas.world_size}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options of the torchrun entry point; defaults from ``ModelConfig`` and ``TrainConfig``."""
    model, training = ModelConfig(), TrainConfig()
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node N -m deepclust.training.distributed", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--features", required=True, help="feature manifest.parquet (or its folder)")
    parser.add_argument("--out", required=True, help="folder or s3:// prefix for model.pt, checkpoints/, history.csv")
    parser.add_argument("--hidden", type=int, default=model.hidden)
    parser.add_argument("--layers", type=int, default=model.layers)
    parser.add_argument("--emb-dim", type=int, default=model.emb_dim)
    parser.add_argument("--batch-size", type=int, default=training.batch_size, help="chunks per step, per process")
    parser.add_argument("--chunk-frames", type=int, default=training.chunk_frames)
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="per process; default: one pass")
    parser.add_argument("--max-epochs", type=int, default=training.max_epochs)
    parser.add_argument("--patience", type=int, default=training.patience)
    parser.add_argument("--learning-rate", type=float, default=training.learning_rate)
    parser.add_argument("--seed", type=int, default=training.seed)
    parser.add_argument(
        "--device", default="auto", help="auto or cuda: cuda:LOCAL_RANK (nccl) when CUDA is available; cpu: gloo"
    )
    parser.add_argument("--max-train-seconds", type=float, default=None)
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if checkpoints/last.pt exists")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """torchrun entry point: train as one process of the group; rank 0 prints the outcome as one JSON line."""
    args = parse_args(argv)
    model_config = ModelConfig(hidden=args.hidden, layers=args.layers, emb_dim=args.emb_dim)
    train_config = TrainConfig(
        batch_size=args.batch_size,
        chunk_frames=args.chunk_frames,
        steps_per_epoch=args.steps_per_epoch,
        max_epochs=args.max_epochs,
        patience=args.patience,
        learning_rate=args.learning_rate,
        seed=args.seed,
        device=args.device,
        max_train_seconds=args.max_train_seconds,
    )
    device = init_process_group(args.device)
    try:
        result = train_distributed(
            args.features, args.out, model_config, train_config, device, resume=not args.no_resume
        )
    finally:
        dist.destroy_process_group()
    if result["rank"] == 0:
        print(
            json.dumps(
                {
                    k: result[k]
                    for k in ("model_url", "epochs", "global_step", "best_val_loss", "stopped_reason", "world_size")
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A dry run of ``--preset paper`` at full size on this machine: mixing, features and a bounded piece of training,
with wall time, peak memory and disk per stage, and the projected time to convergence on CPU and on one GPU.

The corpus is WSJ0-shaped: the demo's 32 synthesised voices laid out as the LDC tree
(``wsj0/{si_tr_s,si_dt_05,si_et_05}/<speaker>/<utterance>.wav``, genders in ``wsj0/doc/spkrinfo.txt``; symbolic
links, no copies), and mix lists in the official format naming ``.wv1`` files as create-speaker-mixtures' do
(``mix_2_spk_{tr,cv,tt}.txt``, ``mix_3_spk_tt.txt``), drawn with the wsj0-2mix protocol at the preset's sizes
(20,000 / 5,000 / 3,000, and 3,000 three-speaker test mixtures) times ``mixtures.scale``. The run is the one
``deepclust reproduce --preset paper --corpus wsj0 --wsj0-root ... --mix-lists ...`` resolves (the same
``resolve_recipe``, the same preflight, the same stage plans), stopped after training; each stage runs in its own
process, so its peak resident memory (``wait4``) is its own. Training is bounded: ``--steps`` steps in each
curriculum phase (100-frame, then 400-frame chunks), one epoch each, each with a full pass over the cv set.

    python benchmarks/bench_paper_size.py --out /tmp/dpcl-paper                         # full size (~1 h, 8 GB)
    python benchmarks/bench_paper_size.py --out /tmp/dpcl-small --set mixtures.scale=0.01 --steps 5   # a check

Projection: an epoch is one pass over the training set's frames in chunks (steps = frames / (chunk x batch)) plus
a cv pass. Both are given for this corpus at full size and for WSJ0's own (wsj0-2mix: 30 h of training and 10 h
of cv mixtures), from the measured seconds per step and per cv frame. How many epochs the paper's recipe needs is
not known here (the recipe stops each phase when the cv loss has not improved for ``patience`` epochs, at most
``max_epochs``): totals are printed for several epoch counts, ``max_epochs`` the upper bound. The GPU figures
are computed, not measured: the network's FLOPs per step at an assumed sustained rate (``--gpu-tflops``), or a
measured rate from ``benchmarks/gpu_check.sh`` (``--gpu-steps-per-second``).

Stages are cached by content key: a rerun with the same ``--out`` reuses finished stages (and then reports them
at their cached cost), so use a fresh ``--out`` for figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from deepclust import storage  # noqa: E402
from deepclust.recipe.config import ReproduceConfig  # noqa: E402
from deepclust.recipe.registry import UPSTREAM  # noqa: E402

STAGES = ("corpus", "mixtures", "features", "train")  # the dry run stops before separation
FRAME_SECONDS = 0.008  # the paper's STFT hop
WSJ0_2MIX_HOURS = {"tr": 30.0, "cv": 10.0}  # wsj0-2mix, 'min' mode: 30 h of training, 10 h of cv mixtures


def lay_out_as_wsj0(out: Path) -> pd.DataFrame:
    """The demo voices as a WSJ0 tree under ``out/wsj0`` (links to the synthesised files); returns the demo's
    manifest with ``listed`` (the path an official list names) and ``wsj0_subset``."""
    from deepclust.pipeline.driver import run_stage
    from deepclust.stages.corpus import CorpusConfig, plan_corpus

    voices = storage.read_parquet(
        run_stage(plan_corpus(str(out / "voices"), CorpusConfig(name="demo")), log=lambda message: None)
    )
    test_speakers = sorted(voices.loc[voices["subset"] == "test", "speaker"].unique())
    subset_of = {s: "si_tr_s" for s in voices["speaker"].unique()}
    subset_of.update({s: ("si_dt_05", "si_et_05")[i % 2] for i, s in enumerate(test_speakers)})
    voices["wsj0_subset"] = voices["speaker"].map(subset_of)
    voices["listed"] = [
        f"wsj0/{subset}/{speaker}/{utterance}.wv1"
        for subset, speaker, utterance in zip(voices["wsj0_subset"], voices["speaker"], voices["utterance_id"])
    ]
    for path, listed in zip(voices["path"], voices["listed"]):
        target = (out / "wsj0" / listed).with_suffix(".wav")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(path)
    genders = voices.groupby("speaker")["gender"].first()
    doc = out / "wsj0" / "wsj0" / "doc"
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "spkrinfo.txt").write_text(";  ID  Sex\n" + "".join(f"{s}  {g.upper()}\n" for s, g in genders.items()))
    return voices


def write_official_lists(voices: pd.DataFrame, folder: Path, config: ReproduceConfig) -> dict:
    """``mix_<n>_spk_<split>.txt`` in the official format at the config's sizes x scale; returns counts by name."""
    from deepclust.mixing.mixlist import generate_mix_lists, write_mix_list

    named = voices.assign(path=voices["listed"], subset=voices["wsj0_subset"])
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    wanted = [(config.mixtures.n_speakers, ("tr", "cv", "tt"))]
    wanted += [(n, ("tt",)) for n in config.mixtures.test_speaker_counts if n != config.mixtures.n_speakers]
    for n_speakers, splits in wanted:
        lists = generate_mix_lists(
            named,
            n_speakers=n_speakers,
            sizes={s: config.mixtures.sizes[s] for s in splits},
            scale=config.mixtures.scale,
            seed=config.mixtures.seed + 1000 * n_speakers,
        )
        for split in splits:
            name = f"mix_{n_speakers}_spk_{split}"
            write_mix_list(lists[split], folder / f"{name}.txt")
            counts[name] = len(lists[split])
    return counts


def run_stage_process(name: str, config_json: Path, upstream: list[str]) -> tuple[str, float, float]:
    """One stage in its own process; returns (manifest URL, wall seconds, peak RSS in MiB)."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, __file__, "--stage", name, "--config", str(config_json), *upstream],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage {name} failed (exit {os.waitstatus_to_exitcode(status)})")
    return out.strip().splitlines()[-1], seconds, usage.ru_maxrss / 1024  # Linux: ru_maxrss in KiB


def stage_main(name: str, config_json: str, upstream: list[str]) -> None:
    """``--stage``: plan and run one stage of the config through the one driver; print its manifest URL."""
    from deepclust.pipeline.driver import run_stage
    from deepclust.recipe import registry

    config = ReproduceConfig.from_dict(json.loads(Path(config_json).read_text()))
    plan = registry.plan(name, config.run_root, upstream, config.stage_configs()[name])
    print(storage.absolute(run_stage(plan, log=lambda message: print(message, file=sys.stderr))))


def disk_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


def folder_of(manifest_url: str) -> Path:
    return Path(manifest_url.removeprefix("file://")).parent


def hours(frames: float) -> float:
    return frames * FRAME_SECONDS / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/dpcl-paper", help="everything goes under OUT (use a fresh one)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD.PATH=VALUE",
        help="as deepclust reproduce --set, e.g. mixtures.scale=0.01 (the lists are drawn at that size)",
    )
    parser.add_argument("--steps", type=int, default=100, help="training steps in each curriculum phase")
    parser.add_argument("--epochs", default="20,50,100", help="epochs per phase to project totals for")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the stage processes")
    parser.add_argument(
        "--gpu-tflops",
        type=float,
        default=10.0,
        help="assumed sustained GPU rate on the BLSTM step (TFLOP/s), for the GPU projection",
    )
    parser.add_argument(
        "--gpu-steps-per-second",
        type=float,
        help="measured 100-frame steps/s of the paper network on a GPU (benchmarks/gpu_check.sh)",
    )
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("upstream", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        return stage_main(args.stage, args.config, args.upstream)

    from deepclust.model.blstm import training_flops_per_frame
    from deepclust.recipe.preflight import check_inputs
    from deepclust.recipe.resolve import resolve_recipe
    from deepclust.stages.corpus import CorpusConfig

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the stage processes' torch threads
    out = Path(args.out).resolve()
    bounded = ["train.max_epochs=1", f"train.steps_per_epoch={args.steps}"]
    config = resolve_recipe(
        "paper",
        str(out / "run"),
        CorpusConfig(name="wsj0", root=str(out / "wsj0")),
        mix_lists=str(out / "lists"),
        overrides=[*args.overrides, *bounded],
    )
    command = " ".join(
        [
            "python benchmarks/bench_paper_size.py",
            "--out",
            args.out,
            *[f"--set {o}" for o in args.overrides],
            f"--steps {args.steps}",
            f"--threads {args.threads}",
        ]
    )
    print(f"$ {command}")
    print(
        f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; preset paper, "
        f"--set {' --set '.join(config.overrides)}"
    )

    began = time.perf_counter()
    voices = lay_out_as_wsj0(out)
    counts = write_official_lists(voices, out / "lists", config)
    layout_seconds = time.perf_counter() - began
    began = time.perf_counter()
    check_inputs(config)  # what `deepclust reproduce` checks before its first stage
    preflight_seconds = time.perf_counter() - began
    print(
        f"WSJ0-shaped tree and lists: {len(voices)} utterances, {voices['speaker'].nunique()} speakers, "
        f"lists {counts}, {layout_seconds:.0f} s; preflight {preflight_seconds:.1f} s"
    )

    config_json = out / "config.json"
    config_json.write_text(json.dumps(config.to_dict(), indent=1))
    manifests, rows = {}, []
    for name in STAGES:
        upstream = [manifests[u] for u in UPSTREAM[name]]
        manifests[name], seconds, peak = run_stage_process(name, config_json, upstream)
        rows.append(
            {"stage": name, "seconds": seconds, "peak_mib": peak, "disk_mib": disk_mib(folder_of(manifests[name]))}
        )

    mixtures = storage.read_parquet(manifests["mixtures"])
    features = storage.read_parquet(manifests["features"])
    frames = features[features["status"] == "done"].groupby("split")["num_frames"].sum()
    history = pd.read_csv(folder_of(manifests["train"]) / "history.csv")
    scale = config.mixtures.scale

    print("\n| stage | wall s | peak RSS MiB | disk MiB | what |")
    print("| --- | --- | --- | --- | --- |")
    what = {
        "corpus": f"{len(voices)} utterances scanned from the WSJ0-shaped tree",
        "mixtures": f"{len(mixtures)} mixtures (tr {hours(frames.get('tr', 0)):.1f} h)",
        "features": f"{len(features)} utterances in {features['shard_url'].nunique()} shards",
        "train": "one epoch of "
        + " and ".join(f"{int(r.steps)} steps of {r.chunk_frames}-frame chunks" for r in history.itertuples()),
    }
    for row in rows:
        print(
            f"| {row['stage']} | {row['seconds']:.0f} | {row['peak_mib']:.0f} | {row['disk_mib']:.0f} "
            f"| {what[row['stage']]} |"
        )

    # Per phase: seconds per training step, and seconds per cv frame (the cv pass covers the whole cv set).
    cv_frames = float(frames.get("cv", 0))
    phases = []
    for row in history.itertuples():
        train_seconds = row.seconds - row.val_seconds
        phases.append(
            {
                "chunk": int(row.chunk_frames),
                "step_s": train_seconds / row.steps,
                "cv_s_per_frame": row.val_seconds / max(cv_frames, 1),
            }
        )
    batch = config.train.batch_size
    flops_per_step = training_flops_per_frame(config.model) * batch * config.train.chunk_frames
    cpu_gflops = flops_per_step / phases[0]["step_s"] / 1e9
    gpu_steps = args.gpu_steps_per_second or args.gpu_tflops * 1e12 / flops_per_step
    gpu_source = "measured" if args.gpu_steps_per_second else f"assumed {args.gpu_tflops:g} TFLOP/s sustained"
    print(
        f"\ntraining: {phases[0]['step_s']:.2f} s per step of {batch} x {phases[0]['chunk']} frames "
        f"({cpu_gflops:.0f} GFLOP/s of {flops_per_step / 1e9:.0f} GFLOP per step)"
        + (f", {phases[1]['step_s']:.2f} s per step of {batch} x {phases[1]['chunk']}" if len(phases) > 1 else "")
        + f"; cv pass over {hours(cv_frames):.2f} h: {history['val_seconds'].iloc[0]:.0f} s"
    )
    print(f"GPU: {gpu_steps:.0f} steps/s of {batch} x {config.train.chunk_frames} frames ({gpu_source})")

    print(
        "\n| corpus at full size | tr h | cv h | epoch, phase 1 (CPU) | epoch, phase 2 (CPU) | epoch, phase 1 (GPU) "
        "| epoch, phase 2 (GPU) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    corpora = {
        "these voices": (hours(frames.get("tr", 0)) / scale, hours(cv_frames) / scale),
        "WSJ0 (wsj0-2mix)": (WSJ0_2MIX_HOURS["tr"], WSJ0_2MIX_HOURS["cv"]),
    }
    epoch_hours = {}
    for label, (tr_h, cv_h) in corpora.items():
        cells = []
        for device in ("cpu", "gpu"):
            for phase in phases:
                steps = tr_h * 3600 / FRAME_SECONDS / (phase["chunk"] * batch)
                cv_s = cv_h * 3600 / FRAME_SECONDS * phase["cv_s_per_frame"]
                if device == "cpu":
                    seconds = steps * phase["step_s"] + cv_s
                else:  # same frames per second whatever the chunk; the cv pass is a forward: a third of a step
                    step_s = phase["chunk"] / config.train.chunk_frames / gpu_steps
                    cv_steps = cv_h * 3600 / FRAME_SECONDS / (config.train.chunk_frames * batch)
                    seconds = steps * step_s + cv_steps / gpu_steps / 3
                epoch_hours[(label, device, phase["chunk"])] = seconds / 3600
                cells.append(_duration(seconds / 3600))
        print(f"| {label} | {tr_h:.1f} | {cv_h:.1f} | " + " | ".join(cells) + " |")

    print(
        "\nprojected training time, both phases, at E epochs each (the recipe stops a phase earlier when the cv "
        f"loss has not improved for {config.train.patience} epochs; max_epochs {preset_max_epochs()} is the bound):"
    )
    print("| corpus | device | " + " | ".join(f"E = {e}" for e in args.epochs.split(",")) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in args.epochs.split(",")) + " |")
    for label in corpora:
        for device in ("cpu", "gpu"):
            per_epoch = sum(epoch_hours[(label, device, phase["chunk"])] for phase in phases)
            cells = [_duration(per_epoch * int(e)) for e in args.epochs.split(",")]
            cpu = f"this CPU, {args.threads} threads (measured)"
            print(
                f"| {label} | {cpu if device == 'cpu' else 'one GPU (' + gpu_source + ')'} | "
                + " | ".join(cells)
                + " |"
            )

    disk = {row["stage"]: row["disk_mib"] for row in rows}
    print(
        f"\ndisk at full size (this corpus): mixtures {disk['mixtures'] / scale / 1024:.1f} GiB, features "
        f"{disk['features'] / scale / 1024:.1f} GiB; for WSJ0 scale by {WSJ0_2MIX_HOURS['tr']:.0f} h / "
        f"{hours(frames.get('tr', 0)) / scale:.1f} h of training audio"
    )
    print(f"disk free under {out}: {shutil.disk_usage(out).free / 2**30:.0f} GiB")


def preset_max_epochs() -> int:
    from deepclust.recipe.presets import preset_config

    return preset_config("paper").train.max_epochs


def _duration(value_hours: float) -> str:
    if value_hours < 1:
        return f"{value_hours * 60:.1f} min"
    return f"{value_hours:.1f} h" if value_hours < 48 else f"{value_hours / 24:.1f} days"


if __name__ == "__main__":
    main()

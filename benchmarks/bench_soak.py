"""Overnight-style soak: a 2,000-file archive on a real S3 server (SeaweedFS on loopback) that is restarted twice
mid-run, with the separating process killed once (SIGKILL) and started again.

It must finish with every good file separated exactly once (one ``done`` row each, its K outputs there, no
output object without a row), every bad file recorded with its reason, and it prints the manifest I/O the
append-only manifest cost against what rewriting the whole manifest after every batch would have cost.

    python benchmarks/bench_soak.py [--files 2000] [--bad-every 100] [--files-per-batch 8]

The network is a tiny untrained one (this measures the plumbing, not separation); inputs are FSDD digits
mixed in pairs (about 0.5 s each).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from archive_fixtures import RestartableS3, fsdd_mixture  # noqa: E402  (the test suite's SeaweedFS helper)

FSDD = REPO.parent / "shared" / "corpora" / "fsdd" / "recordings"


def tiny_model(path: Path) -> str:
    import torch

    from deepclust.features.extract import FeatureConfig
    from deepclust.features.normalisation import FeatureStats
    from deepclust.model.blstm import DeepClusteringNet, ModelConfig
    from deepclust.model.checkpoint import save_model

    torch.manual_seed(0)
    # Small but not trivial (about 40x real time on one core), so the run lasts long enough to be interrupted.
    save_model(
        str(path),
        DeepClusteringNet(ModelConfig(hidden=64, layers=2, emb_dim=8)),
        FeatureStats(np.zeros(129), np.ones(129)),
        FeatureConfig().to_dict(),
    )
    return str(path)


def separated_so_far(fs, bucket: str) -> int:
    """Inputs with outputs so far: one listing of ``out`` (cheap; reading the manifest's parts is not)."""
    try:
        return sum(1 for name in fs.find(f"{bucket}/out") if name.endswith("/s1.wav"))
    except Exception:  # the server is down right now
        return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--bad-every", type=int, default=100, help="every N-th file is damaged")
    parser.add_argument("--files-per-batch", type=int, default=8)
    args = parser.parse_args()
    print(
        f"$ python benchmarks/bench_soak.py --files {args.files} --bad-every {args.bad_every} "
        f"--files-per-batch {args.files_per_batch}"
    )
    work = Path(tempfile.mkdtemp(prefix="dpcl-soak-"))
    server = RestartableS3(work / "s3", bucket="soak")
    server.start()
    try:
        soak(args, work, server)
    finally:
        server.stop()  # also when a check or the run fails: never leave a server behind


def soak(args, work: Path, server: RestartableS3) -> None:
    env = {**os.environ, **server.server.env(), "OMP_NUM_THREADS": "1"}
    os.environ.update(server.server.env())
    import fsspec.config

    fsspec.config.conf["s3"] = {
        "endpoint_url": server.server.endpoint,
        "key": env["AWS_ACCESS_KEY_ID"],
        "secret": env["AWS_SECRET_ACCESS_KEY"],
    }
    fs = server.server.filesystem()
    local = work / "in"
    good, bad = [], []
    for index in range(args.files):
        rel = f"day{index // 500:02d}/call_{index:05d}.wav"
        path = local / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if args.bad_every and index % args.bad_every == args.bad_every - 1:
            path.write_bytes(b"RIFF" + os.urandom(200))  # damaged: recorded, never retried for ever
            bad.append(rel)
        else:
            sf.write(path, fsdd_mixture(FSDD, index % 10, index), 8000)
            good.append(rel)
    began = time.perf_counter()
    fs.put(str(local) + "/", "soak/in/", recursive=True)
    print(f"{args.files} files ({len(bad)} damaged) uploaded in {time.perf_counter() - began:.0f} s")
    model = tiny_model(work / "tiny.pt")
    command = [
        sys.executable,
        "-m",
        "deepclust.cli",
        "separate",
        "--model",
        model,
        "--input",
        "s3://soak/in",
        "--out",
        "s3://soak/out",
        "--files-per-batch",
        str(args.files_per_batch),
        "--device",
        "cpu",
        "--retry-minutes",
        "3",
        "--summary-json",
    ]

    events, runs = [], []
    began = time.perf_counter()
    run = subprocess.Popen(
        command + [str(work / "summary-1.json")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    plan = [(0.2, "restart"), (0.45, "kill"), (0.7, "restart")]
    while plan:
        done = separated_so_far(fs, "soak")
        if run.poll() is not None:
            break
        if done >= plan[0][0] * args.files:
            fraction, action = plan.pop(0)
            if action == "restart":
                server.stop()
                time.sleep(3)
                server.start()
                events.append(
                    f"{time.perf_counter() - began:.0f} s: S3 server killed and restarted at {done} inputs done"
                )
            else:
                run.send_signal(signal.SIGKILL)
                run.wait()
                runs.append(("killed", None))
                events.append(f"{time.perf_counter() - began:.0f} s: separating process killed at {done} inputs done")
                run = subprocess.Popen(
                    command + [str(work / "summary-2.json")],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
        time.sleep(0.5)
    # The scheduler's part: a run that ends with 75 (transient faults outlasted its retries) is started again.
    attempt = 2
    while True:
        while run.poll() is None:
            if server.process.poll() is not None:  # the store died on its own: note it and bring it back
                events.append(
                    f"{time.perf_counter() - began:.0f} s: S3 server found dead (exit "
                    f"{server.process.returncode}); restarted"
                )
                server.start()
            time.sleep(0.5)
        out, err = run.communicate()
        runs.append((run.returncode, out.strip().splitlines()[-1] if out.strip() else err.strip()[-400:]))
        if run.returncode != 75 or attempt >= 6:
            break
        attempt += 1
        run = subprocess.Popen(
            command + [str(work / f"summary-{attempt}.json")],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    seconds = time.perf_counter() - began
    for event in events:
        print(event)
    for code, line in runs:
        print(f"run exit {code}: {line}")

    from deepclust.archive import read_manifest

    manifest = read_manifest("s3://soak/out").set_index("relative_path")
    outputs = {o for o in fs.find("soak/out") if o.endswith(".wav")}
    recorded = {f"soak/out/{name}" for names in manifest.loc[manifest["status"] == "done", "outputs"] for name in names}
    checks = {
        "one row per input": len(manifest) == args.files and manifest.index.is_unique,
        "every good file done": bool((manifest.reindex(good)["status"] == "done").all()),
        "every damaged file failed with its reason": bool(
            (manifest.reindex(bad)["status"] == "failed").all()
            and manifest.reindex(bad)["error"].str.contains("call_").all()
        ),
        "no transient row left": int((manifest["status"] == "transient").sum()) == 0,
        "every recorded output exists": recorded <= outputs,
        "no output without a row (separated once)": outputs == recorded,
    }
    for name, ok in checks.items():
        print(f"  {'ok ' if ok else 'FAIL'} {name}")
    last = work / f"summary-{attempt}.json"
    summary = json.loads(last.read_text()) if last.exists() else {}
    batches = -(-args.files // args.files_per_batch)
    rewrite_rows = sum(min(args.files, (b + 1) * args.files_per_batch) for b in range(batches))
    print(
        f"wall time {seconds:.0f} s for {args.files} files; last run: {summary.get('separated')} separated, "
        f"{summary.get('already_done')} already done"
    )
    print(
        f"manifest I/O of the last run: {summary.get('manifest_writes')} files, {summary.get('manifest_rows_written')} "
        f"rows written; rewriting the whole manifest after every batch would write {rewrite_rows:,} rows "
        f"in {batches} full rewrites (for {args.files} inputs)"
    )
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()

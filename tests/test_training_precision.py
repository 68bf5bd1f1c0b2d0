"""bf16 on CPUs with AMX, the compiled objective, and the batch prefetcher: faster, same training."""

import numpy as np
import pytest
import torch

from deepclust.features.extract import FeatureConfig
from deepclust.model.blstm import DeepClusteringNet, ModelConfig
from deepclust.model.device import PrecisionUnavailableError, bf16_support, cpu_has_native_bf16, resolve_precision
from deepclust.training.config import TrainConfig
from deepclust.training.dynamic_mixing import DynamicMixConfig, DynamicMixing, SourcePool
from deepclust.training.objective import batch_loss
from deepclust.training.prefetch import prefetched
from deepclust.training.train import fit


@pytest.fixture(scope="module")
def source(corpora_dir):
    from deepclust.corpora.sources import CorpusSource, prepare_sources

    corpus = prepare_sources([CorpusSource(str(corpora_dir / "librispeech-speakers"), "librispeech")])
    pool = SourcePool(corpus[corpus["subset"] == "train"].head(6), 8000)
    return DynamicMixing(pool, pool, FeatureConfig(), DynamicMixConfig(cv_mixtures=4, stats_mixtures=16), seed=0)


def test_auto_precision_is_bf16_exactly_where_the_cpu_has_bf16_units_and_runs_it():
    flags = open("/proc/cpuinfo").read()
    native = "amx_bf16" in flags or "avx512_bf16" in flags
    assert cpu_has_native_bf16() == native
    runs = bf16_support().runs  # False where oneDNN has no bf16 LSTM (an AVX2-only CPU), whatever the flags say
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native and runs else "fp32")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    if runs:
        assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    else:  # refused in words, never attempted
        with pytest.raises(PrecisionUnavailableError, match="cannot run the network in bfloat16"):
            resolve_precision("bf16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="half")


@pytest.mark.bf16
def test_bf16_loss_is_close_to_fp32_and_the_losses_stay_float32(source):
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig.preset("chimera++", hidden=32, layers=1))
    batch = next(source.training_batches([0, 0, 0], 40, 4, 1))
    config = TrainConfig(dc_loss="whitened")
    fp32 = batch_loss(model, batch, torch.device("cpu"), None, config)
    bf16 = batch_loss(model, batch, torch.device("cpu"), torch.bfloat16, config)
    assert fp32.dtype == bf16.dtype == torch.float32
    assert abs(float(bf16) - float(fp32)) < 0.02 * abs(float(fp32))
    assert float(bf16) != float(fp32)  # bf16 really ran


def test_the_compiled_objective_gives_the_eager_loss_and_gradients(source):
    torch.manual_seed(0)
    # D = 20, every preset's embedding size. (With D = 4, torch 2.13's inductor code for AVX2 CPUs, where the vector
    # ISA is AVX2, gives wrong embedding-head gradients; D = 2, 6, 8, 12, 16 and 20 match eager there.)
    model = DeepClusteringNet(ModelConfig.preset("chimera++", hidden=16, layers=1, emb_dim=20))
    batch = next(source.training_batches([0, 0, 0], 20, 2, 1))
    config = TrainConfig(dc_loss="whitened")
    eager = batch_loss(model, batch, torch.device("cpu"), None, config)
    eager_grads = torch.autograd.grad(eager, list(model.parameters()))
    compiled = batch_loss(model, batch, torch.device("cpu"), None, config, compile=True)
    compiled_grads = torch.autograd.grad(compiled, list(model.parameters()))
    assert float(compiled) == pytest.approx(float(eager), rel=1e-4)
    for a, b in zip(eager_grads, compiled_grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)


def test_prefetched_batches_are_the_same_batches_in_the_same_order():
    items = [np.full(3, i) for i in range(7)]
    assert [int(x[0]) for x in prefetched(iter(items), depth=2)] == list(range(7))
    assert [int(x[0]) for x in prefetched(iter(items), depth=0)] == list(range(7))

    def failing():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1]
    stream = prefetched(iter(range(1000)), depth=2)
    assert next(stream) == 0
    stream.close()  # stops the producer: no thread left blocked on a full queue


@pytest.mark.bf16
def test_a_bf16_run_trains_records_its_precision_and_is_reproducible(source, tmp_path):
    model_config = ModelConfig.preset("chimera++", hidden=8, layers=1, emb_dim=4)
    config = TrainConfig(
        chunk_frames=30,
        batch_size=3,
        steps_per_epoch=3,
        max_epochs=2,
        patience=9,
        device="cpu",
        seed=0,
        dc_loss="whitened",
        precision="bf16",
    )
    runs = [
        fit([], [], str(tmp_path / name), model_config, config, feature_stats=source.feature_stats, batch_source=source)
        for name in ("one", "two")
    ]
    extra = torch.load(runs[0]["model_url"], weights_only=True)["extra"]
    assert extra["precision"] == "bf16" and extra["lineage"][-1]["precision"] == "bf16"
    assert runs[0]["best_val_loss"] < runs[0]["initial_val_loss"]
    assert [h["val_loss"] for h in runs[0]["history"]] == [h["val_loss"] for h in runs[1]["history"]]


def test_training_settings_skip_nan_filling_of_new_tensors_and_restore_the_callers():
    # Deterministic mode NaN-fills every new tensor unless told not to: 11 % of a CPU step, not needed for
    # reproducibility (the same-seed and resume tests check that). The caller's settings come back afterwards.
    from deepclust.training.steps import torch_settings

    torch.utils.deterministic.fill_uninitialized_memory = True
    torch.use_deterministic_algorithms(False)
    with torch_settings(TrainConfig(), torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is True

"""Shared fixtures: the real corpora in ../shared, found relative to the repository."""

from pathlib import Path

import pytest
import torch

# Fixture modules, shared by every test module that names one of their fixtures (tests import only their helpers).
pytest_plugins = ["archive_fixtures", "flows_fixtures", "server_fixtures", "training_fixtures", "wsj0_fixtures"]

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"

# Two cores on CI: one intra-op thread per test process keeps timings stable.
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "bf16: needs a CPU (and torch build) that runs the network in bfloat16")


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.bf16`` tests skip, with the probe's reason, where this CPU cannot run bfloat16 (an
    AVX2-only CPU: oneDNN has no bf16 LSTM there); their float32 twins run everywhere."""
    marked = [item for item in items if item.get_closest_marker("bf16")]
    if not marked:
        return
    from deepclust.model.device import bf16_support

    support = bf16_support()
    if not support.runs:
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=f"needs bfloat16: {support.reason}"))


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    if not CORPORA.is_dir():
        pytest.fail(f"shared corpora not found at {CORPORA}: clone the repository beside ../shared")
    return CORPORA


@pytest.fixture(scope="session")
def fsdd_dir(corpora_dir) -> Path:
    return corpora_dir / "fsdd" / "recordings"


@pytest.fixture(scope="session")
def librispeech_dir(corpora_dir) -> Path:
    return corpora_dir / "librispeech-excerpts"

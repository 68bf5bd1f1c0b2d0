"""Shared fixtures: the real corpora in ../shared, found relative to the repository."""

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"

# Two cores on CI: one intra-op thread per test process keeps timings stable.
torch.set_num_threads(1)


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

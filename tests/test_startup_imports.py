"""Start-up stays short: the command line and the separator do not import what only some paths use.

scikit-learn (1.2 s here, with the parts of SciPy it pulls in) serves only ``--kmeans sklearn``, and SciPy's signal
module (0.2-0.9 s) only resampling, mixing and augmentation; every ``deepclust`` call would pay them otherwise
(issue 17's start-up target is 3 s, import and model load)."""

import subprocess
import sys

import pytest

HEAVY = ("sklearn", "scipy.signal")


@pytest.mark.parametrize(
    "code",
    [
        "from deepclust.separation.separator import Separator",
        "from deepclust.cli import build_parser; build_parser()",
    ],
)
def test_start_up_imports_neither_scikit_learn_nor_scipy_signal(code):
    probe = f"import sys; {code}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"imported at start-up: {result.stdout.strip()}"


def test_kmeans_by_scikit_learn_still_works_once_imported_on_first_use():
    import numpy as np

    from deepclust.separation.kmeans import kmeans_sklearn

    points = np.concatenate([np.zeros((20, 2)), np.ones((20, 2)) * 5]).astype(np.float32)
    labels = kmeans_sklearn(points + np.random.default_rng(0).normal(0, 0.1, points.shape), 2)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[20]

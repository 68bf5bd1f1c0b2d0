"""The one permutation search: NumPy (metrics, stitching) and torch (PIT losses) agree with the textbook loop
over ``itertools.permutations`` on real separations, break ties as mir_eval does, and route the gradient."""

import itertools

import numpy as np
import pytest
import torch

from deepclust.audio import read_audio
from deepclust.metrics.permutation import best_match, matched_totals, permutation_table
from deepclust.model.permutation import min_over_permutations
from deepclust.separation.oracle import ideal_binary_mask_estimates

LIBRISPEECH_FILES = ["198-209-0000.ogg", "3436-172162-0000.ogg", "5703-47212-0000.ogg"]


@pytest.fixture(scope="module")
def real_errors(librispeech_dir):
    """``(2, 3, 3)`` squared errors of IBM estimates against three LibriSpeech talkers, two 1 s excerpts;
    estimate ``i`` of excerpt ``b`` is talker ``SHUFFLES[b][i]``."""
    talkers = [read_audio(librispeech_dir / name, target_sr=8000)[0] for name in LIBRISPEECH_FILES]
    errors = []
    for b, start in enumerate((8000, 16000)):
        sources = np.stack([t[start : start + 8000] for t in talkers]).astype(np.float64)
        estimates = ideal_binary_mask_estimates(sources.sum(0), sources)[list(SHUFFLES[b])]
        errors.append(((estimates[:, None, :] - sources[None, :, :]) ** 2).sum(-1))
    return np.stack(errors)


SHUFFLES = [(2, 0, 1), (1, 0, 2)]


def textbook_totals(scores):
    """``[sum_a scores[a, p[a]] for p in itertools.permutations]``, one permutation at a time."""
    n = scores.shape[0]
    return [sum(scores[a, p[a]] for a in range(n)) for p in itertools.permutations(range(n))]


def test_totals_and_best_match_equal_the_textbook_loop_on_real_errors(real_errors):
    for b, errors in enumerate(real_errors):
        table, totals = matched_totals(errors)
        np.testing.assert_allclose(totals, textbook_totals(errors), rtol=1e-12, atol=0)
        assert [tuple(row) for row in table] == list(itertools.permutations(range(3)))
        # the least error matches each IBM estimate with the talker it was made from
        assert tuple(best_match(-errors)) == SHUFFLES[b]
    np.testing.assert_array_equal(matched_totals(real_errors)[1], np.stack([matched_totals(e)[1] for e in real_errors]))


def test_a_tie_goes_to_the_first_permutation_in_itertools_order_as_mir_eval():
    assert list(best_match(np.zeros((3, 3)))) == [0, 1, 2]
    # (0, 2, 1) and (1, 0, 2) tie above the others: the earlier one, (0, 2, 1), wins
    scores = np.array([[3.0, 1.0, 0.0], [1.0, -5.0, 0.0], [0.0, 0.0, 1.0]])  # both total 3
    assert list(best_match(scores)) == [0, 2, 1]
    assert not permutation_table(3).flags.writeable  # shared by every caller: nobody may change it


def test_torch_min_equals_the_numpy_totals_and_the_gradient_reaches_only_the_best_match(real_errors):
    pair = torch.tensor(real_errors, requires_grad=True)
    least = min_over_permutations(pair)
    np.testing.assert_allclose(least.detach().numpy(), matched_totals(real_errors)[1].min(-1), rtol=1e-12)
    least.sum().backward()
    for b, shuffle in enumerate(SHUFFLES):
        expected = np.zeros((3, 3))
        expected[np.arange(3), list(shuffle)] = 1.0  # d min / d pair = 1 on the chosen entries, 0 elsewhere
        np.testing.assert_array_equal(pair.grad[b].numpy(), expected)


def test_a_non_square_score_matrix_is_rejected_with_the_shape_expected():
    with pytest.raises(ValueError, match=r"\(\.\.\., K, K\)"):
        matched_totals(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(batch, K, K\)"):
        min_over_permutations(torch.zeros(2, 3))

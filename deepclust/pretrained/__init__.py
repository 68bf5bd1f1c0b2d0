"""The model deepclust ships: trained on real read speech, used when no ``--model`` is given.

``load()`` returns it ready for ``deepclust.separation.Separator``; ``path()`` gives its file. How it was
made (the exact command, data, split, seed, machine, training time) and what it scores on speakers it
never heard are in ``MODEL_CARD.md`` beside it.
"""

from __future__ import annotations

from pathlib import Path

MODEL_FILE = "real-chimera-2spk.pt"


def path() -> str:
    """Absolute path of the shipped model file."""
    return str(Path(__file__).resolve().with_name(MODEL_FILE))


def load(device: str = "cpu"):
    """The shipped model as a ``deepclust.model.checkpoint.LoadedModel`` on ``device`` (weights stored in
    half precision, run in float32)."""
    from deepclust.model.checkpoint import load_model

    model_path = path()
    if not Path(model_path).is_file():
        raise FileNotFoundError(
            f"{model_path}: the pretrained model is missing from this installation; reinstall deepclust or pass --model"
        )
    return load_model(model_path, device)

"""PNG figures written beside the reports: the training loss curve and example masks."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from deepclust import storage  # noqa: E402

# Spectrograms and masks are noisy images that RGB PNG compresses badly (about 0.5 MB each); the listening
# pages show dozens. A 64-colour palette keeps the magma/gray colour maps visibly the same at a third of that.
MASK_PICTURE_COLOURS = 64


def _save(fig, url: str, palette_colours: int | None = None) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    if palette_colours:
        from PIL import Image  # matplotlib's own dependency

        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        buffer = io.BytesIO()
        image.quantize(palette_colours, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    storage.write_bytes_atomic(url, buffer.getvalue())
    return storage.absolute(url)


def plot_loss_curve(history_csv_url: str, png_url: str, initial_val_loss: float | None = None) -> str:
    """Training and validation loss per epoch (epoch 0: the untrained network, when known)."""
    with storage.open_url(history_csv_url, "rb") as handle:
        history = pd.read_csv(handle)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history["epoch"], history["train_loss"], marker="o", label="training")
    epochs, val = list(history["epoch"]), list(history["val_loss"])
    if initial_val_loss is not None:
        epochs, val = [0, *epochs], [initial_val_loss, *val]
    ax.plot(epochs, val, marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("deep clustering loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, png_url)


def plot_masks(log_mag: np.ndarray, masks: np.ndarray, png_url: str, title: str = "") -> str:
    """Mixture log-spectrogram ``(frames, freq)`` beside each estimated mask ``(K, frames, freq)``."""
    k = len(masks)
    fig, axes = plt.subplots(1, k + 1, figsize=(3.2 * (k + 1), 3), sharey=True)
    axes[0].imshow(log_mag.T, origin="lower", aspect="auto", cmap="magma")
    axes[0].set_title("mixture (log magnitude)")
    for i, mask in enumerate(masks, start=1):
        axes[i].imshow(mask.T, origin="lower", aspect="auto", cmap="gray", vmin=0, vmax=1)
        axes[i].set_title(f"mask s{i}")
    axes[0].set_ylabel("frequency bin")
    for ax in axes:
        ax.set_xlabel("frame")
    if title:
        fig.suptitle(title, y=1.03)  # above the panel titles
    return _save(fig, png_url, palette_colours=MASK_PICTURE_COLOURS)

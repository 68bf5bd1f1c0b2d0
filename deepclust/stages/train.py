"""The training stage: feature shards become a trained network (one unit that resumes from its own
checkpoints inside the stage folder), its history and loss curve.
"""

from __future__ import annotations

import pandas as pd

from deepclust import storage
from deepclust.pipeline.plan import StageDefinition, StagePlan, config_dict, config_of, recipe_params
from deepclust.pipeline.store import make_stage


def plan_train(run_root: str, feature_manifest_url: str, model_config, train_config) -> StagePlan:
    """One unit: training resumes from its own checkpoints inside the stage folder."""
    stage = make_stage(
        run_root,
        "train",
        {"model": recipe_params(model_config), "train": recipe_params(train_config)},
        [feature_manifest_url],
    )
    return StagePlan(
        stage,
        STAGE,
        [{"id": "train"}],
        {
            "model": config_dict(model_config),
            "train": config_dict(train_config),
            "feature_manifest_url": feature_manifest_url,
        },
    )


def train_unit(plan, unit) -> dict:
    """Train into the stage folder (resuming its checkpoints); returns the model URL, losses, epochs, stop reason."""
    from deepclust.model.blstm import ModelConfig
    from deepclust.training.config import TrainConfig
    from deepclust.training.from_features import train

    model_config, train_config = config_of(plan, ModelConfig, "model"), config_of(plan, TrainConfig, "train")
    outcome = train(plan.context["feature_manifest_url"], plan.stage.url, model_config, train_config, resume=True)
    return {
        "model_url": outcome["model_url"],
        "best_val_loss": float(outcome["best_val_loss"]),
        "initial_val_loss": outcome.get("initial_val_loss"),
        "epochs": len(outcome["history"]),
        "stopped_reason": outcome.get("stopped_reason"),
    }


def train_finish(plan, results):
    """Plot the loss curve; return the one-row model manifest (model URL and checksum, best loss, history, curve)."""
    from deepclust.reports.figures import plot_loss_curve

    result = results[0]
    history_url = plan.stage.path("history.csv")
    curve = (
        plot_loss_curve(history_url, plan.stage.path("loss_curve.png"), result.get("initial_val_loss"))
        if storage.exists(history_url)
        else None
    )
    manifest = pd.DataFrame(
        [
            {
                "model_url": storage.absolute(result["model_url"]),
                "sha256": storage.sha256_of(result["model_url"]),
                "best_val_loss": result["best_val_loss"],
                "epochs": result["epochs"],
                "history_url": storage.absolute(history_url),
                "loss_curve_png": curve or "",
            }
        ]
    )
    return manifest, result


def model_url_of(model_manifest_url: str) -> str:
    """The trained model file named by a training stage's manifest."""
    return storage.read_parquet(model_manifest_url)["model_url"].iloc[0]


# One unit (the whole training run), which uses every core by itself: unit_workers=1.
STAGE = StageDefinition(
    "train",
    plan_train,
    train_unit,
    train_finish,
    "train",
    upstream=("features",),
    config_fields=("model", "train"),
    unit_workers=1,
)

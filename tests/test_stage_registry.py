"""The stage registry is the one list of the recipe's stages (issue 28): each ``StageDefinition`` says what it reads,
which configs it takes and how many of its units run at once, and the upstream table, the end-to-end config's
``stage_configs()`` and the Prefect stage flows all follow from it."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from deepclust.recipe import registry
from deepclust.recipe.config import ReproduceConfig
from deepclust.recipe.presets import preset_config

# What the registry and ReproduceConfig.stage_configs() listed by hand before the definitions carried it.
UPSTREAM_BY_HAND = {
    "corpus": (),
    "mixtures": ("corpus",),
    "features": ("mixtures",),
    "train": ("features",),
    "separate": ("train", "mixtures"),
    "evaluate": ("separate", "mixtures"),
}


def stage_configs_by_hand(config: ReproduceConfig) -> dict[str, list]:
    return {
        "corpus": [config.corpus],
        "mixtures": [config.mixtures],
        "features": [config.features],
        "train": [config.model, config.train],
        "separate": [config.separate],
        "evaluate": [config.evaluate],
    }


def test_the_definitions_give_the_upstream_table_and_configs_listed_by_hand_before():
    config = preset_config("paper")
    assert registry.UPSTREAM == UPSTREAM_BY_HAND
    assert list(registry.UPSTREAM) == list(registry.STAGES)
    configs = config.stage_configs()
    assert list(configs) == list(registry.STAGES)
    for name, expected in stage_configs_by_hand(config).items():  # the very objects, not equal copies
        assert len(configs[name]) == len(expected) and all(a is b for a, b in zip(configs[name], expected)), name


def test_every_config_field_is_a_field_of_the_end_to_end_config_and_each_is_taken_once():
    fields = {f.name for f in dataclasses.fields(ReproduceConfig)}
    taken = [f for definition in registry.STAGES.values() for f in definition.config_fields]
    assert set(taken) <= fields and len(taken) == len(set(taken)), taken


def test_every_upstream_is_a_stage_that_runs_earlier_and_the_registry_refuses_one_that_does_not():
    order = list(registry.STAGES)
    for name, definition in registry.STAGES.items():
        assert all(u in order[: order.index(name)] for u in definition.upstream), (name, definition.upstream)
    backwards = dict(registry.STAGES)
    backwards["mixtures"] = dataclasses.replace(backwards["mixtures"], upstream=("features",))
    with pytest.raises(ValueError, match="'mixtures' reads \\['features'\\]"):
        registry._check_upstream_order(backwards)


def test_only_training_runs_one_unit_at_a_time():
    assert {name: d.unit_workers for name, d in registry.STAGES.items() if d.unit_workers is not None} == {"train": 1}


def test_each_stage_has_a_flow_named_after_it_that_takes_its_upstreams_configs_and_publish():
    pytest.importorskip("prefect")
    from deepclust.flows.stages import STAGE_FLOWS

    assert tuple(STAGE_FLOWS) == tuple(registry.STAGES)
    for name, stage_flow in STAGE_FLOWS.items():
        definition = registry.STAGES[name]
        assert stage_flow.name == name
        parameters = list(inspect.signature(stage_flow.fn).parameters.values())
        # run_root, one URL per upstream manifest, one per config, then publish (default True)
        assert len(parameters) == 1 + len(definition.upstream) + len(definition.config_fields) + 1, name
        assert parameters[-1].name == "publish" and parameters[-1].default is True, name


def test_the_end_to_end_flow_gives_every_stage_but_training_its_task_runner():
    pytest.importorskip("prefect")
    from deepclust.flows.reproduce import stage_flow_of
    from deepclust.flows.stages import STAGE_FLOWS

    for name in registry.STAGES:
        runner = stage_flow_of(name, "thread", 3)
        if name == "train":  # one unit using every core: its own one-worker runner, whatever the run asked
            assert runner is STAGE_FLOWS[name] and runner.task_runner._max_workers == 1
        else:
            assert runner is not STAGE_FLOWS[name] and runner.name == name
            assert runner.task_runner._max_workers == 3, name

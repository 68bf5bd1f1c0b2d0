"""The recipe's one list of stages: its order agrees with what each stage reads, the end-to-end config has
configs for exactly those stages, and a plan read back from its JSON form runs with its own stage's definition."""

from __future__ import annotations

import json

import pytest

from deepclust.pipeline.plan import StagePlan
from deepclust.recipe import registry
from deepclust.recipe.config import demo_config
from deepclust.recipe.reproduce import recipe
from deepclust.stages.corpus import CorpusConfig, plan_corpus


def test_every_stage_reads_only_stages_that_run_before_it():
    order = list(registry.STAGES)
    assert set(registry.UPSTREAM) == set(order)
    for name, upstream in registry.UPSTREAM.items():
        assert all(order.index(u) < order.index(name) for u in upstream), (name, upstream)


def test_the_recipe_runs_the_registered_stages_with_their_configs(tmp_path):
    config = demo_config(str(tmp_path), quick=True)
    steps = recipe(config)
    assert [name for name, _, _ in steps] == list(registry.STAGES)
    assert dict((name, configs) for name, _, configs in steps)["train"] == [config.model, config.train]


def test_a_plan_read_back_from_json_carries_its_stages_definition(tmp_path):
    plan = plan_corpus(str(tmp_path), CorpusConfig(name="demo"))
    assert plan.definition is registry.STAGES["corpus"]
    again = registry.plan_from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.definition is registry.STAGES["corpus"]
    assert (again.stage, again.units, again.context) == (plan.stage, plan.units, plan.context)
    with pytest.raises(ValueError, match="'corpus'.*'features'"):
        StagePlan(plan.stage, registry.STAGES["features"])


def test_the_end_to_end_config_reads_back_from_its_json_form(tmp_path):
    from deepclust.recipe.config import ReproduceConfig

    for quick in (True, False):
        config = demo_config(str(tmp_path), quick=quick)
        assert ReproduceConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config

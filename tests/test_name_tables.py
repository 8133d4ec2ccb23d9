"""Every choice a config offers by name is a `Literal` type declared beside the table that implements
it: the two must list the same names, so a variant is one function, one table row and one name."""

from __future__ import annotations

import typing

import pytest

from rlhfkit.algorithms import advantages, dpo_losses, kl, policy_gradient, reward_losses
from rlhfkit.eval import hacking
from rlhfkit.loop.config import EvalConfig
from rlhfkit.models import actor_critic, reward, value
from rlhfkit.train import optim
from rlhfkit.train.config import Schedule
from rlhfkit.train.dpo import batches as dpo_batches
from rlhfkit.train.dpo import config as dpo_config
from rlhfkit.train.dpo import terms as dpo_terms
from rlhfkit.train.reward import data as reward_data

PAIRS = [
    (advantages.AdvantageName, advantages.ADVANTAGE_ESTIMATORS),
    (policy_gradient.LossAggregation, policy_gradient.LOSS_AGGREGATIONS),
    (policy_gradient.RatioLevel, policy_gradient.RATIOS),
    (kl.KLEstimatorName, kl.KL_ESTIMATORS),
    (kl.KLControllerName, kl.KL_CONTROLLERS),
    (dpo_losses.DPOLossName, dpo_losses.DPO_LOSSES),
    (reward_losses.PairwiseLossName, reward_losses.PAIRWISE_LOSSES),
    (reward_losses.RankingLossName, reward_losses.RANKING_LOSSES),
    (reward_losses.RatingLossName, reward_losses.RATING_LOSSES),
    (actor_critic.PolicyMode, actor_critic.POLICY_MODES),
    (reward.Pooling, reward.POOLINGS),
    (value.ValueInit, value.VALUE_INITS),
    (Schedule, optim.SCHEDULES),
    (dpo_batches.Layout, dpo_batches.LAYOUTS),
    (reward_data.Layout, reward_data.LAYOUTS),
    (dpo_config.RankingsAs, dpo_terms.RANKING_MODES),
]


@pytest.mark.parametrize("names, table", PAIRS, ids=lambda x: getattr(x, "__name__", ""))
def test_literal_names_match_the_table(names: object, table: dict) -> None:
    assert set(typing.get_args(names)) == set(table)


def test_select_by_lists_the_selection_keys() -> None:
    options = typing.get_args(typing.get_type_hints(EvalConfig)["select_by"])
    assert set(options) == {"auto", *hacking.SELECTION_KEYS}


def test_every_loss_hyperparameter_is_a_dpo_config_field() -> None:
    import dataclasses

    fields = {f.name for f in dataclasses.fields(dpo_config.DPOSettings)}
    assert fields >= dpo_losses.LOSS_HYPERPARAMETERS


def test_every_advantage_hyperparameter_is_a_grpo_config_field() -> None:
    import dataclasses

    from rlhfkit.train.grpo.config import GRPOSettings

    fields = {f.name for f in dataclasses.fields(GRPOSettings)}
    for name in advantages.ADVANTAGE_ESTIMATORS:
        if name != "gae":  # PPO's, with its own gamma and lam
            assert advantages.estimator_hyperparameters(name) - {"eps"} <= fields, name

"""DPO on a tiny model: config rules, every loss through the loop, real learning, the reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rlhfkit.algorithms.dpo_losses import (
    DPO_LOSSES,
    PreferenceLogps,
    loss_hyperparameters,
)
from rlhfkit.cli import run_command
from rlhfkit.config import ConfigError, build_config
from rlhfkit.data.fixtures import fixture_path
from rlhfkit.models.tiny import byte_tokenizer, tiny_model
from rlhfkit.train.dpo import DPOConfig, dpo
from rlhfkit.train.dpo import trainer as dpo_module
from rlhfkit.train.dpo.batches import (
    LAYOUTS,
    encode_group,
    record_texts,
    response_logps,
)
from rlhfkit.train.dpo.terms import RANKING_MODES, pairwise_terms, plackett_luce_terms

FAST = {"model": "tiny", "progress": False, "kl_max_new_tokens": 8, "kl_prompts": 4, "warmup_steps": 0}


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def series(rows: list[dict], key: str) -> list[float]:
    return [r[key] for r in rows if key in r]


def separable_pairs(path: Path, n: int = 48) -> Path:
    """Chosen replies are friendly, rejected ones curt: a preference a model can learn and generalise."""
    rows = [
        {
            "prompt": f"Request number {i}: can you help?",
            "chosen": f"Sure, happy to help with request {i}!",
            "rejected": f"No. {i}",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cfg_for(data: Path | str, out: Path, **values: object) -> DPOConfig:
    return DPOConfig(data=str(data), output=out, **{**FAST, **values})  # type: ignore[arg-type]


# --- config -------------------------------------------------------------------------------------


def test_each_loss_accepts_exactly_its_own_hyperparameters() -> None:
    # From the signatures in algorithms/dpo_losses.py.
    assert loss_hyperparameters("sigmoid") == frozenset()
    assert loss_hyperparameters("cdpo") == {"label_smoothing"}
    assert loss_hyperparameters("robust") == {"label_smoothing"}
    assert loss_hyperparameters("simpo") == {"gamma", "label_smoothing", "sft_weight"}
    assert loss_hyperparameters("orpo") == frozenset()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["gamma=1.0"], "gamma does not apply to loss=sigmoid"),
        (["loss=hinge", "label_smoothing=0.1"], "label_smoothing does not apply to loss=hinge"),
        (["loss=ipo", "sft_weight=1"], "sft_weight does not apply"),
        (["loss=cdpo", "label_smoothing=0.5"], "label_smoothing must be in [0, 0.5)"),
        (["loss=dpo"], "loss must be one of"),
        (["beta=0"], "beta must be positive"),
        (["rankings_as=plackett_luce"], "rankings_as applies to kind=rankings"),
        (["kind=rankings", "rankings_as=plackett_luce", "loss=ipo"], "set loss=sigmoid"),
        (["lora.r=4", "freeze_layers=1"], "set one of them"),
        (["max_prompt_length=600"], "max_prompt_length"),
        (["layout=flat"], "layout must be one of"),
        (["kl_estimator=k4"], "kl_estimator"),
    ],
)
def test_contradictory_or_unknown_settings_are_rejected(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        build_config(DPOConfig, values={"data": "x.jsonl", "output": "out"}, overrides=overrides)


def test_variant_knobs_from_overrides_reach_the_loss() -> None:
    cfg = build_config(
        DPOConfig,
        values={"data": "x.jsonl", "output": "out"},
        overrides=["loss=simpo", "beta=2.0", "gamma=0.3", "sft_weight=0.5"],
    )
    assert (cfg.loss, cfg.beta) == ("simpo", 2.0)
    assert cfg.hyperparameters() == {"gamma": 0.3, "sft_weight": 0.5}
    assert build_config(DPOConfig, values={"data": "x", "output": "o"}).hyperparameters() == {}


def test_the_example_config_is_valid() -> None:
    repo = Path(__file__).resolve().parents[2]
    cfg = build_config(DPOConfig, yaml_path=repo / "configs" / "dpo_hh.yaml", values={"data": "x", "output": "o"})
    assert (cfg.loss, cfg.kind, cfg.layout) == ("sigmoid", "pairs", "packed")


# --- loss terms of a batch ----------------------------------------------------------------------


def test_a_ranking_becomes_all_its_pairs_or_one_plackett_luce_term() -> None:
    # One ranking of 3, beta 1: rewards r = logp - ref = [-1+1.5, -2+1.5, -4+3] = [0.5, -0.5, -1].
    logps, ref = torch.tensor([-1.0, -2.0, -4.0]), torch.tensor([-1.5, -1.5, -3.0])
    lengths = torch.tensor([2, 3, 4])
    cfg = DPOConfig(data="x", output=Path("o"), beta=1.0)
    pairs = pairwise_terms(logps, lengths, ref, [3], cfg)
    # Pairs (0,1), (0,2), (1,2): margins 1, 1.5, 0.5 -> -log sigmoid: 0.313262, 0.201413, 0.474077.
    torch.testing.assert_close(pairs.losses, torch.tensor([0.313262, 0.201413, 0.474077]), atol=1e-6, rtol=0)
    assert pairs.chosen_rewards.tolist() == [0.5, 0.5, -0.5] and pairs.rejected_rewards.tolist() == [-0.5, -1.0, -1.0]
    pl = plackett_luce_terms(logps, lengths, ref, [3], cfg)
    # -(r0 - lse(r0, r1, r2)) - (r1 - lse(r1, r2)) = 0.464369 + 0.474077 = 0.938446
    torch.testing.assert_close(pl.losses, torch.tensor([0.938446]), atol=1e-6, rtol=0)
    torch.testing.assert_close(pl.chosen_rewards, pairs.chosen_rewards)  # logged pair by pair alike
    assert RANKING_MODES["pairs"].units([2, 3, 4]) == 1 + 3 + 6 and RANKING_MODES["plackett_luce"].units([2, 3]) == 2


def test_pair_terms_match_a_naive_loop_for_groups_of_mixed_sizes() -> None:
    g = torch.Generator().manual_seed(0)
    sizes = [2, 4, 3]
    logps, ref = -torch.rand(9, generator=g) * 20, -torch.rand(9, generator=g) * 20
    lengths = torch.randint(1, 30, (9,), generator=g)
    for loss in ("sigmoid", "ipo", "orpo"):
        cfg = DPOConfig(data="x", output=Path("o"), loss=loss, beta=0.3)
        got = pairwise_terms(logps, lengths, ref, sizes, cfg).losses
        expected, start = [], 0
        for n in sizes:  # explicit double loop over the better (i) and worse (j) responses of each group
            for i in range(start, start + n):
                for j in range(i + 1, start + n):
                    batch = PreferenceLogps(
                        logps[[i]],
                        logps[[j]],
                        ref[[i]],
                        ref[[j]],
                        lengths[[i]],
                        lengths[[j]],
                        -logps[[i]] / lengths[[i]].float(),
                    )
                    expected.append(float(DPO_LOSSES[loss](batch, 0.3).losses))
            start += n
        torch.testing.assert_close(got, torch.tensor(expected), atol=1e-6, rtol=1e-6)


# --- the loop -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", sorted(DPO_LOSSES))
def test_every_loss_trains_end_to_end(loss: str, tmp_path: Path) -> None:
    cfg = cfg_for(
        fixture_path("pairs_small.jsonl"),
        tmp_path / loss,
        loss=loss,
        max_steps=4,
        lr=1e-3,
        batch_size=4,
        eval_fraction=0.2,
        kl_prompts=0,
        save_every=0,
    )
    run = run_command("dpo", cfg)  # the command, so the run directory gets its report
    rows = metrics(run)
    train = series(rows, "train/loss")
    assert len(train) == 4 and all(torch.isfinite(torch.tensor(train)))
    assert train[-1] < train[0]  # lr 1e-3 on a tiny model: four steps already lower the loss
    assert series(rows, "eval/loss") and series(rows, "eval/reward_accuracy")
    assert (run / "model.safetensors").exists() and (run / "report.html").exists()
    # Reference-free losses never compute (nor cache) reference log-probs.
    assert (run / dpo_module.REFERENCE_CACHE).exists() == (loss not in ("simpo", "orpo"))


@pytest.mark.slow
def test_separable_preferences_are_learned_and_generalise(tmp_path: Path) -> None:
    data = separable_pairs(tmp_path / "pairs.jsonl")
    cfg = cfg_for(
        data, tmp_path / "run", max_steps=30, lr=2e-3, batch_size=4, eval_fraction=0.25, eval_every=10, beta=0.5
    )
    rows = metrics(dpo(cfg))
    accuracy, loss = series(rows, "eval/reward_accuracy"), series(rows, "eval/loss")
    assert accuracy[0] == 0.0  # step 0: policy = reference, every implicit reward is exactly 0
    assert accuracy[-1] >= 0.9  # held-out prompts: the preference generalised
    assert loss[-1] < 0.5 * loss[0]  # from log 2
    margins = series(rows, "eval/reward_margin")
    assert margins[-1] > 0.5
    kl = series(rows, "eval/kl")
    assert abs(kl[0]) < 1e-3  # policy = reference at step 0
    assert kl[-1] > 0.01  # the policy moved away from the reference
    assert (tmp_path / "run" / "samples.jsonl").exists()


def _cached_vs_recomputed(run: Path, data: Path, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = DPOConfig(data=str(data), output=run, **FAST)
    tok = byte_tokenizer()
    from rlhfkit.data.loaders import load_records
    from rlhfkit.train.sources import split_holdout

    recs = load_records(str(data), "pairs").records
    train_recs, _ = split_holdout(recs, "", cfg.eval_fraction, cfg.seed, "pairs", False)
    texts, _ = record_texts(train_recs)
    groups = [
        encode_group(
            tok, p, r, max_length=cfg.max_length, max_prompt_length=cfg.prompt_limit, chat_template=cfg.chat_template
        )
        for p, r in texts
    ]
    cached = _only_cache(run)["train"]
    with torch.no_grad():
        fresh, _ = response_logps(model.eval(), LAYOUTS["rows"](groups, tok.pad_token_id))
    return cached, fresh


def _only_cache(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / dpo_module.REFERENCE_CACHE))


@pytest.mark.slow
def test_lora_reference_is_computed_once_and_is_the_base_with_the_adapter_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel

    data = separable_pairs(tmp_path / "pairs.jsonl", n=24)
    calls: list[int] = []
    real = dpo_module.compute_reference_logps

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dpo_module, "compute_reference_logps", counting)
    values = {"data": str(data), "output": str(tmp_path / "run"), **FAST}
    cfg = build_config(DPOConfig, values=values, overrides=["max_steps=6", "lr=1e-2", "lora.r=4", "batch_size=4"])
    run = dpo(cfg)
    assert len(calls) == 2  # one pass over the train split, one over the eval split, before any update

    # After training: the base with the adapter disabled still gives exactly the cached log-probs,
    # while the trained adapter gives different ones.
    trained = PeftModel.from_pretrained(tiny_model(0), run / "adapter")
    with trained.disable_adapter():
        cached, base = _cached_vs_recomputed(run, data, trained)
    torch.testing.assert_close(base, cached, atol=2e-4, rtol=1e-5)
    _, policy = _cached_vs_recomputed(run, data, trained)
    assert (policy - cached).abs().max() > 1e-2

    # A resumed run (more steps) reads the cache instead of recomputing.
    more = build_config(DPOConfig, values=values, overrides=["max_steps=8", "lr=1e-2", "lora.r=4", "batch_size=4"])
    dpo(more)
    assert len(calls) == 2
    assert [r["step"] for r in metrics(run) if "train/loss" in r] == list(range(1, 9))


def test_full_finetuning_reference_is_the_initial_model(tmp_path: Path) -> None:
    data = separable_pairs(tmp_path / "pairs.jsonl", n=24)
    run = dpo(cfg_for(data, tmp_path / "run", max_steps=3, lr=1e-2, batch_size=4, kl_prompts=0))
    cached, initial = _cached_vs_recomputed(run, data, tiny_model(0))
    torch.testing.assert_close(initial, cached, atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("mode", ["pairs", "plackett_luce"])
def test_rankings_train_as_pairs_or_as_plackett_luce(mode: str, tmp_path: Path) -> None:
    cfg = cfg_for(
        fixture_path("rankings_small.jsonl"),
        tmp_path / mode,
        kind="rankings",
        rankings_as=mode,
        max_steps=6,
        lr=2e-3,
        batch_size=4,
        eval_fraction=0.25,
        kl_prompts=0,
    )
    rows = metrics(dpo(cfg))
    train = series(rows, "train/loss")
    assert len(train) == 6 and train[-1] < train[0]
    # At step 1 every implicit reward is 0: a pair's loss is log 2, a ranking of K's is log K!
    # (uniform over the K! orders); the fixture's rankings hold 3 or 4 responses.
    if mode == "pairs":
        assert train[0] == pytest.approx(math.log(2), abs=1e-4)
    else:
        assert math.log(6) - 1e-4 <= train[0] <= math.log(24) + 1e-4
    assert 0.0 <= series(rows, "eval/reward_accuracy")[-1] <= 1.0


def test_preferences_straight_from_a_feedback_app_project(tmp_path: Path) -> None:
    from rlhfkit.feedback.entities import NewItem, ProjectSpec
    from rlhfkit.feedback.store import FeedbackStore

    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    store = FeedbackStore(url)
    try:
        store.create_project(ProjectSpec(name="prefs", overlap=1))
        store.add_items(
            "prefs",
            [NewItem(prompt=f"Question {i}?", responses=(f"A kind answer {i}.", f"No {i}.")) for i in range(12)],
        )
        user = store.create_user("ann", "annotator", "correct horse battery").id
        while (task := store.next_task("prefs", user)) is not None:  # the annotator prefers the kind answer
            kind = next(r.id for r in task.responses if r.text.startswith("A kind"))
            store.submit(task.assignment_id, user, {"choice": kind})
    finally:
        store.close()
    run = dpo(
        cfg_for(f"{url}#prefs", tmp_path / "run", max_steps=2, lr=1e-3, batch_size=4, kl_prompts=0, eval_fraction=0.25)
    )
    rows = metrics(run)
    assert len(series(rows, "train/loss")) == 2 and series(rows, "eval/reward_accuracy")

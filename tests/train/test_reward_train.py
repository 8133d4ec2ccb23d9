"""Reward-model training on a tiny model: real effects, training modes, normalization, resume."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhfkit.cli import run_command
from rlhfkit.config import build_config
from rlhfkit.data.fixtures import fixture_path
from rlhfkit.models.reward import RewardModel, load_reward_model
from rlhfkit.models.tiny import tiny_model
from rlhfkit.train.reward.config import RewardConfig
from rlhfkit.train.reward.trainer import _drop_ties, _load_split, reference_samples

WORDS = [
    "red",
    "blue",
    "green",
    "small",
    "large",
    "quick",
    "slow",
    "happy",
    "calm",
    "bright",
    "dark",
    "soft",
    "loud",
    "warm",
    "cold",
]


def marker_pairs(path: Path, n: int, seed: int) -> Path:
    """Chosen = rejected + the marker word 'please' somewhere inside: separable, but not by position."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(WORDS, 4)
        marked = list(words)
        marked.insert(rng.randint(0, 4), "please")
        rows.append(
            {"prompt": f"Describe item {rng.randint(0, 999)}.", "chosen": " ".join(marked), "rejected": " ".join(words)}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train(tmp_path: Path, name: str, data: list[Path], *overrides: str) -> Path:
    values = {"model": "tiny", "data": ",".join(map(str, data)), "output": str(tmp_path / name)}
    base = ["progress=false", "batch_size=8", "lr=3e-3", "warmup_steps=1", "normalize=false", "save_every=0"]
    # The command, so the run directory gets its report.
    return run_command("reward train", build_config(RewardConfig, values=values, overrides=[*base, *overrides]))


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def losses(run: Path) -> list[float]:
    return [r["train/loss"] for r in metrics(run) if "train/loss" in r]


def test_tiny_model_learns_a_separable_preference(tmp_path: Path) -> None:
    train_file = marker_pairs(tmp_path / "train.jsonl", 160, seed=0)
    test_file = marker_pairs(tmp_path / "test.jsonl", 60, seed=1)
    run = train(tmp_path, "run", [train_file], f"eval_data={test_file}", "max_steps=15")
    result = json.loads((run / "reward_eval.json").read_text())
    assert result["n"] == 60
    assert result["accuracy"] > 0.95
    assert (run / "report.html").exists()
    assert any(r.get("eval/accuracy", 0) > 0.95 for r in metrics(run))
    scores = load_reward_model(run).score(["Describe item 5."] * 2, ["red please blue calm warm", "red blue calm warm"])
    assert scores.mean[0] > scores.mean[1]


def test_a_frozen_trunk_with_mean_pooling_learns_the_separable_preference(tmp_path: Path) -> None:
    """Only the head trains, on cached mean-pooled features: the marker word's embedding is in the mean."""
    train_file = marker_pairs(tmp_path / "train.jsonl", 160, seed=0)
    test_file = marker_pairs(tmp_path / "test.jsonl", 60, seed=1)
    run = train(
        tmp_path,
        "run",
        [train_file],
        f"eval_data={test_file}",
        "max_steps=60",
        "lr=3e-2",
        "freeze_layers=-1",
        "pooling=mean",
    )
    assert json.loads((run / "reward_eval.json").read_text())["accuracy"] > 0.95
    assert load_reward_model(run).meta.pooling == "mean"


@pytest.mark.slow
def test_cached_features_give_the_same_losses_and_serve_later_epochs(tmp_path: Path, monkeypatch) -> None:
    data = marker_pairs(tmp_path / "pairs.jsonl", 24, seed=0)  # 3 batches of 8 = one epoch
    rows_through_trunk: list[int] = []  # sequences, whatever the layout (uncached steps pack each pair in a row)
    original = RewardModel.features

    def counting(self, input_ids, attention_mask, **packed):
        rows_through_trunk.append(len(input_ids) if packed.get("row") is None else len(packed["row"]))
        return original(self, input_ids, attention_mask, **packed)

    monkeypatch.setattr(RewardModel, "features", counting)
    common = ("max_steps=7", "freeze_layers=-1", "eval_fraction=0", "lr=1e-2")
    cached = train(tmp_path, "cached", [data], *common)
    computed = sum(rows_through_trunk)
    rows_through_trunk.clear()
    uncached = train(tmp_path, "uncached", [data], *common, "cache_features=false")
    assert losses(cached) == pytest.approx(losses(uncached), rel=1e-5, abs=1e-6)
    assert computed == 48  # 24 pairs = 48 sequences, each through the trunk exactly once in 7 steps
    assert sum(rows_through_trunk) == 7 * 16  # without the cache, every step runs the trunk
    assert [r["perf/cache_hit_rate"] for r in metrics(cached)][-1] == pytest.approx(1 - 48 / (7 * 16))
    assert load_file(str(cached / "features.safetensors"))["features"].shape == (48, 64)


def test_ensemble_heads_disagree(tmp_path: Path) -> None:
    data = marker_pairs(tmp_path / "pairs.jsonl", 40, seed=0)
    run = train(tmp_path, "ens", [data], "max_steps=6", "n_heads=3", "freeze_layers=-1", "lr=3e-2", "eval_fraction=0")
    model = load_reward_model(run)
    scores = model.score(["Describe item 1.", "Describe item 2."], ["red please blue", "calm warm"])
    assert scores.per_head.shape == (2, 3)
    assert scores.std is not None and bool((scores.std > 0).all())
    head = load_file(str(run / "reward_head.safetensors"))["weight"]
    assert not torch.allclose(head[0], head[1]) and not torch.allclose(head[1], head[2])


def test_normalization_gives_mean_0_std_1_on_the_reference_samples(tmp_path: Path) -> None:
    data = marker_pairs(tmp_path / "pairs.jsonl", 40, seed=0)
    run = train(
        tmp_path,
        "norm",
        [data],
        "max_steps=3",
        "normalize=true",
        "normalize_prompts=8",
        "normalize_sampling.max_new_tokens=6",
        "eval_fraction=0",
    )
    cfg = build_config(RewardConfig, yaml_path=run / "config.yaml")
    model = load_reward_model(run)
    prompts, texts = reference_samples(model, cfg, _load_split(cfg)[0], frozen=False)
    scores = model.score(prompts, texts)
    assert len(prompts) == 8
    assert scores.mean.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert scores.mean.std().item() == pytest.approx(1.0, abs=1e-4)
    assert model.meta.normalization.reference == "tiny" and model.meta.normalization.samples == 8

    off = train(tmp_path, "off", [data], "max_steps=1", "normalize=false", "eval_fraction=0")
    norm = json.loads((off / "reward.json").read_text())["normalization"]
    assert (norm["gain"], norm["bias"]) == ([1.0], [0.0])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "frozen"])
def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(tmp_path: Path, mode: str) -> None:
    data = marker_pairs(tmp_path / "pairs.jsonl", 40, seed=0)
    extra = ["freeze_layers=-1", "lr=1e-2"] if mode == "frozen" else []
    args = ("max_steps=8", "save_every=4", "keep_checkpoints=3", "eval_fraction=0.2", "eval_every=4", *extra)
    straight = train(tmp_path, "straight", [data], *args)
    # The same run, crashed right after its step-4 checkpoint: later checkpoints and outputs are gone.
    crashed = tmp_path / "crashed"
    shutil.copytree(straight, crashed)
    shutil.rmtree(crashed / "checkpoints" / "step-000008")
    (crashed / "checkpoints" / "latest").write_text("step-000004\n")
    for name in ("model.safetensors", "reward_head.safetensors", "reward.json", "reward_eval.json"):
        (crashed / name).unlink()
    config = crashed / "config.yaml"
    config.write_text(config.read_text().replace(str(straight), str(crashed)))
    train(tmp_path, "crashed", [data], *args)
    a, b = metrics(straight), metrics(crashed)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for key in ("train/loss", "eval/accuracy", "eval/bt_loss"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-7)
    prompts, responses = ["Describe item 1."], ["red please blue"]
    assert load_reward_model(straight).score(prompts, responses).mean.item() == pytest.approx(
        load_reward_model(crashed).score(prompts, responses).mean.item(), rel=1e-5
    )


def test_top_layers_mode_trains_only_the_top(tmp_path: Path) -> None:
    data = marker_pairs(tmp_path / "pairs.jsonl", 24, seed=0)
    run = train(tmp_path, "top", [data], "max_steps=3", "freeze_layers=1", "eval_fraction=0")
    trained = load_reward_model(run).backbone.state_dict()
    base = tiny_model(0).state_dict()
    assert torch.equal(trained["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
    assert torch.equal(trained["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])
    assert not torch.equal(trained["model.layers.1.mlp.up_proj.weight"], base["model.layers.1.mlp.up_proj.weight"])


def test_lora_mode_saves_the_adapter(tmp_path: Path) -> None:
    data = marker_pairs(tmp_path / "pairs.jsonl", 24, seed=0)
    run = train(tmp_path, "lora", [data], "max_steps=3", "lora.r=4", "lr=1e-2", "eval_fraction=0")
    assert (run / "adapter" / "adapter_config.json").exists()
    trained = load_reward_model(run).backbone.state_dict()
    base = tiny_model(0).state_dict()
    assert not torch.equal(trained["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])


@pytest.mark.parametrize(
    ("pairwise", "ranking", "rating", "center"),
    [("davidson", "plackett_luce", "ordinal", "0.01"), ("ties_half", "all_pairs", "regression", "0")],
)
def test_every_loss_trains_on_pairs_rankings_and_ratings(
    tmp_path: Path, pairwise: str, ranking: str, rating: str, center: str
) -> None:
    files = [fixture_path(n) for n in ("pairs_small.jsonl", "rankings_small.jsonl", "ratings_small.jsonl")]
    run = train(
        tmp_path,
        "mixed",
        files,
        "max_steps=4",
        f"pairwise_loss={pairwise}",
        f"ranking_loss={ranking}",
        f"rating_loss={rating}",
        f"center_coef={center}",
        "n_heads=2",
        "eval_fraction=0.2",
    )
    meta = json.loads((run / "reward.json").read_text())
    assert meta["loss"] == f"{pairwise}+{ranking}+{rating}"
    rows = metrics(run)
    assert len(losses(run)) == 4 and all(l == l for l in losses(run))  # noqa: E741 (x == x is the NaN check)
    assert "eval/accuracy" in rows[-1]
    if pairwise == "davidson":  # the loss parameters train and are checkpointed with the model
        ckpt = run / "checkpoints" / "step-000004" / "loss.safetensors"
        params = load_file(str(ckpt))
        assert set(params) == {"log_nu", "thresholds_raw"} and params["thresholds_raw"].shape == (2, 6)


def test_plain_bradley_terry_drops_ties_and_ties_half_keeps_them() -> None:
    from rlhfkit.data.records import Comparison

    records = [Comparison("p", "a", "b"), Comparison("p", "c", "d", tie=True)]
    assert _drop_ties(records, "bradley_terry") == records[:1]
    assert _drop_ties(records, "ties_half") == records


def test_packed_and_row_layouts_train_alike(tmp_path: Path) -> None:
    """Packing a pair's shared prompt into one row changes the work, not the training: same losses."""
    data = marker_pairs(tmp_path / "pairs.jsonl", 32, seed=0)
    common = ("max_steps=4", "eval_fraction=0", "lr=1e-3")
    packed = train(tmp_path, "packed", [data], *common, "layout=packed")
    rows = train(tmp_path, "rows", [data], *common, "layout=rows")
    assert losses(packed) == pytest.approx(losses(rows), rel=1e-4, abs=1e-5)
    assert losses(packed)[-1] != losses(packed)[0]

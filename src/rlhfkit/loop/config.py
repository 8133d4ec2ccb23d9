"""`LoopConfig`: every knob of `rlhfkit loop` (and of the demo), documented and validated.

The defaults are the demo's budget: the bundled SmolLM2-135M on two CPU cores, a positive-sentiment
task judged by a simulated panel (``bench/results/demo.md`` has the timings and the runs behind the
defaults). Larger runs raise the sizes in a YAML file (``configs/loop_sentiment.yaml``).

The training stages hold their trainer's own settings, typed: ``reward`` is a `RewardSettings`,
``policy`` a `PPOSettings` or a `DPOSettings` (chosen by ``policy.method``), each preset here to the
loop's defaults, so ``reward.pairwise_loss=ties_half`` or ``policy.lora.r=8`` is checked by the
trainer's own config class. Each round completes them with its inputs and output
(`rlhfkit.loop.training`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rlhfkit.config import VARIANTS, Config, require
from rlhfkit.data.chat import ChatTemplate
from rlhfkit.judges.config import JudgeSettings
from rlhfkit.rollout.generate import SamplingConfig
from rlhfkit.train.dpo.config import DPOSettings
from rlhfkit.train.grpo.config import GRPOSettings, RLOOSettings
from rlhfkit.train.ppo.config import PPOSettings
from rlhfkit.train.reward.config import RewardSettings


@dataclass(frozen=True)
class PanelConfig(Config):
    """The simulated annotators (`rlhfkit.loop.annotators.make_panel`)."""

    members: int = 5
    """Panel size; each member is an annotator account of the app."""
    careless_share: float = 0.2
    """Share of members answering at random (quality control should flag them)."""
    bias_std: float = 0.0
    """Std of the members' length preferences (0: nobody cares about length)."""
    temperature: float = 0.1
    """Bradley-Terry noise of every member, in gold units (0 = always follows the gold)."""
    transport: Literal["store", "rest"] = "store"
    """'store' (in-process, like a script on the server) or 'rest' (the JSON API over HTTP; needs
    feedback.serve=true so that the app listens)."""
    seed: int = 0
    """Seeds the panel's composition and every judgment."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.members >= 1, f"panel.members must be >= 1, got {self.members}")
        require(0.0 <= self.careless_share <= 1.0, "panel.careless_share must be in [0, 1]")
        require(self.bias_std >= 0 and self.temperature >= 0, "panel.bias_std and panel.temperature must be >= 0")
        require(self.seed >= 0, "panel.seed must be >= 0")


@dataclass(frozen=True)
class FeedbackConfig(Config):
    """Where judgments come from and how the app's project is set up."""

    source: Literal["panel", "app", "both", "ai", "mixed"] = "panel"
    """'panel' (simulated), 'app' (people; the loop waits for their judgments), 'both', 'ai' (an AI judge
    alone, RLAIF; overlap 1) or 'mixed' (the panel gives panel_judgments per item, the AI judge the last)."""
    db: str = ""
    """Database URL of the feedback app ('' = sqlite:///OUTPUT/feedback.db). The loop's state lives here."""
    project: str = "loop"
    """Project holding every round's items; the reward model trains on its whole export."""
    task_type: Literal["ranking", "pairwise"] = "ranking"
    """'ranking' (all K candidates ordered; K(K-1)/2 pairs per item) or 'pairwise' (needs K = 2)."""
    overlap: int = 3
    """Judgments per item, each from a different annotator."""
    panel_judgments: int = 0
    """source=both or mixed: judgments per item the panel may give (0 = overlap - 1); people or the AI
    judge give the rest."""
    gold_items: int = 4
    """Gold (known-answer) items per round for quality control, built from candidates the gold scorer
    separates clearly (0 = none; needs a gold scorer)."""
    gold_rate: float = 0.1
    """Share of an annotator's tasks drawn from gold items."""
    serve: bool = False
    """Run the app (uvicorn) in a thread while the loop runs, so people can log in."""
    host: str = "127.0.0.1"
    """Interface the app listens on when served."""
    port: int = 8000
    """Port the app listens on when served."""
    poll_seconds: float = 5.0
    """How often the loop checks for new judgments while it waits for people."""
    wait_timeout: float = 0.0
    """Give up waiting for people after this many seconds (0 = wait until every item is judged)."""
    panel: PanelConfig = PanelConfig()
    """The simulated panel (source panel, both or mixed)."""
    judge: JudgeSettings = JudgeSettings()
    """The AI judge (source ai or mixed): judge.judge is a model or an OpenAI-compatible URL."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.project), "feedback.project must not be empty")
        require(1 <= self.overlap <= 100, f"feedback.overlap must be in [1, 100], got {self.overlap}")
        require(
            0 <= self.panel_judgments < max(2, self.overlap),
            "feedback.panel_judgments must be < overlap (people need at least one slot)",
        )
        require(
            self.source not in ("both", "mixed") or self.overlap >= 2,
            f"feedback.source={self.source} needs overlap >= 2",
        )
        require(
            self.source != "ai" or self.overlap == 1, "feedback.source=ai needs overlap=1 (one AI account per item)"
        )
        require(self.gold_items >= 0 and 0.0 <= self.gold_rate <= 1.0, "feedback.gold_items >= 0, gold_rate in [0, 1]")
        require(self.poll_seconds > 0 and self.wait_timeout >= 0, "feedback.poll_seconds > 0, wait_timeout >= 0")
        require(1 <= self.port <= 65535, "feedback.port must be a TCP port")
        require(self.panel.transport != "rest" or self.serve, "panel.transport=rest needs feedback.serve=true")


@dataclass(frozen=True)
class CandidatesConfig(Config):
    """What the current policy writes for annotators each round."""

    per_prompt: int = 8
    """K: candidates sampled per prompt (identical candidates are dropped; items need at least 2)."""
    prompts_per_round: int = 48
    """Training prompts used per round, rotating through the set (0 = all)."""
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=32, temperature=0.8, batch_size=32)
    """Sampling of the candidates: a little hotter than the policy's rollouts, so annotators get real
    choices, but close enough that the reward model learns on the text PPO will produce."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.per_prompt >= 2, f"candidates.per_prompt must be >= 2, got {self.per_prompt}")
        require(self.prompts_per_round >= 0, "candidates.prompts_per_round must be >= 0")
        require(
            self.sampling.temperature > 0, "candidates.sampling.temperature must be > 0 (greedy gives one candidate)"
        )


@dataclass(frozen=True)
class RewardStage(RewardSettings):
    """The reward model retrained each round on all feedback so far (`rlhfkit.train.reward`); its
    data, kind, seed and progress come from the loop."""

    chat_template: ChatTemplate = "always"
    """As the trainer's, but 'always' here: the loop's policy samples from templated prompts (plain-text
    prompts become one user turn), so its reward model must read them the same way."""
    model: str = ""
    """Trunk of the reward model ('' = the loop's initial policy, e.g. the SFT model)."""
    trunk_layers: int = 15
    """Use only the bottom N transformer blocks of the trunk (0 = all). In the middle of a network the
    last token's state is a better linear feature of what a text says than the top layer's, which is
    shaped to predict the next token (on the demo's task: correlation 0.49 with the gold score at layer
    15 of SmolLM2, 0.38 at layer 30; bench/results/demo.md); half the layers also halve every forward."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.trunk_layers >= 0, "reward.trunk_layers must be >= 0")


@dataclass(frozen=True)
class PPOStage(PPOSettings):
    """policy.method=ppo: PPO against the round's reward model, from the current policy (which is also
    its KL reference). Every rollout is logged (samples_per_log = rollout_batch_size), so that the gold
    score of what PPO sampled is known at every step: the proxy-vs-gold curve."""

    method: Literal["ppo"] = "ppo"
    """How the policy is optimized each round: 'ppo' (Ziegler et al. 2019 / InstructGPT) or 'dpo'."""


@dataclass(frozen=True)
class DPOStage(DPOSettings):
    """policy.method=dpo: DPO on every pair the project has exported so far (Rafailov et al. 2023)."""

    method: Literal["dpo"] = "dpo"
    """How the policy is optimized each round: 'ppo' or 'dpo' (Rafailov et al. 2023, on the exported pairs)."""
    chat_template: ChatTemplate = "always"
    """As the trainer's, but 'always' here: the loop's policy samples from templated prompts (plain-text
    prompts become one user turn), so its DPO pairs must read them the same way."""


@dataclass(frozen=True)
class GRPOStage(GRPOSettings):
    """policy.method=grpo: GRPO against the round's reward model, from the current policy (also its KL
    reference); every rollout is logged, as PPO's is, for the proxy-vs-gold curve."""

    method: Literal["grpo"] = "grpo"
    """How the policy is optimized each round: 'grpo' (Shao et al. 2024: group baselines, no critic)."""


@dataclass(frozen=True)
class RLOOStage(RLOOSettings):
    """policy.method=rloo: RLOO against the round's reward model (leave-one-out baselines, the KL in the reward)."""

    method: Literal["rloo"] = "rloo"
    """How the policy is optimized each round: 'rloo' (Ahmadian et al. 2024)."""


LOOP_SAMPLING = SamplingConfig(max_new_tokens=32, temperature=0.7, batch_size=32)
"""How the loop samples PPO rollouts, the reward model's normalization samples and every evaluation
(the KL on held-out prompts is measured at this temperature)."""

REWARD_STAGE = RewardStage(
    max_steps=300,
    lr=3e-3,
    batch_size=16,
    n_heads=3,
    pooling="mean",
    freeze_layers=-1,
    max_length=128,
    weight_decay=0.01,
    normalize_prompts=16,
    normalize_sampling=LOOP_SAMPLING,
    eval_fraction=0.1,
    save_every=20,
    log_every=10,
    eval_every=0,
)
"""The loop's reward model: heads only (a frozen trunk with cached features, seconds on a CPU) on mean-
pooled features, three bootstrap heads whose disagreement is a reward-hacking signal, a checkpoint every
20 steps. Mean pooling: on the demo's feedback the scores of held-out samples correlate 0.64 with the
gold score against 0.37 for the last token's state (bench/results/demo.md)."""

PPO_STAGE = PPOStage(
    max_steps=20,
    lr=5e-4,
    batch_size=8,
    grad_accum=1,
    rollout_batch_size=32,
    ppo_epochs=2,
    kl_controller="pi",
    init_kl_coef=0.1,
    kl_target=3.5,
    kl_horizon=256,
    min_kl_coef=0.02,
    sampling=LOOP_SAMPLING,
    samples_per_log=32,
    log_every=1,
    save_every=4,
    warmup_steps=0,
    schedule="constant",
)
"""The loop's PPO: 20 steps of 32 rollouts (on a CPU, decoding reads every weight once per token whatever
the batch, so 20 x 32 samples the 640 responses 15% faster than 40 x 16), two epochs, and the PI KL
controller, which keeps the KL near its 3.5-nat target within a short round (kl_horizon 256 samples;
the numbers behind these choices are in bench/results/demo.md)."""

DPO_STAGE = DPOStage(
    max_steps=20,
    lr=5e-4,
    batch_size=8,
    beta=0.1,
    max_length=160,
    max_prompt_length=128,
    kl_max_new_tokens=LOOP_SAMPLING.max_new_tokens,
    eval_fraction=0.1,
    log_every=1,
    save_every=4,
    warmup_steps=0,
)
"""The loop's DPO: as many steps as PPO, on prompts and responses as long as the reward model reads."""

_CRITIC_FREE = {
    "max_steps": 20,
    "lr": 5e-4,
    "batch_size": 8,
    "grad_accum": 4,
    "prompts_per_step": 4,
    "group_size": 8,
    "sampling": LOOP_SAMPLING,
    "samples_per_log": 32,
    "log_every": 1,
    "save_every": 4,
}
GRPO_STAGE = GRPOStage(**_CRITIC_FREE, beta=0.1)  # type: ignore[arg-type]  # the dict's values are typed per key
"""The loop's GRPO: PPO's sample budget (20 steps x 4 prompts x 8 responses), one optimizer step per rollout."""
RLOO_STAGE = RLOOStage(**_CRITIC_FREE, beta=0.1)  # type: ignore[arg-type]
"""The loop's RLOO: the same budget, leave-one-out baselines of 8 responses, the KL in the reward."""


@dataclass(frozen=True)
class EvalConfig(Config):
    """Evaluation after every round, on held-out prompts, against the round-0 policy."""

    prompts: str = ""
    """Held-out prompts file ('' = hold out `fraction` of the loop's prompts)."""
    fraction: float = 0.25
    """Share of the prompts held out for evaluation when `prompts` is empty."""
    samples_per_prompt: int = 4
    """Responses per held-out prompt and policy (comparisons = prompts x this)."""
    select_by: Literal["auto", "gold", "conservative_proxy", "proxy"] = "auto"
    """Best checkpoint by 'gold', 'conservative_proxy' (mean - k * ensemble std), 'proxy', or 'auto'."""
    conservative_k: float = 1.0
    """k of the conservative proxy."""
    window: int = 5
    """Points per moving average of the over-optimization detector. Each PPO step's point is a mean over
    its rollout (32 samples by default, whose sentiment gold varies by about 0.08 from step to step); over
    3 points that noise alone crossed 10% of gold's peak in bench/overopt.py, over 5 it did not."""
    tolerance: float = 0.03
    """Gold drop below its smoothed peak (share of the peak) that fires the detector."""
    std_tolerance: float = 0.25
    """Relative rise of the ensemble disagreement that fires the detector."""
    bootstrap: int = 200
    """Bootstrap resamples of the leaderboard's confidence intervals."""
    examples: int = 8
    """Held-out prompts shown before/after in the report."""
    sampling: SamplingConfig = LOOP_SAMPLING
    """How each policy samples the held-out prompts (the KL to the initial policy is measured on these)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 < self.fraction < 1.0, "eval.fraction must be in (0, 1)")
        require(self.samples_per_prompt >= 1, "eval.samples_per_prompt must be >= 1")
        require(self.conservative_k >= 0 and self.window >= 1, "eval.conservative_k >= 0 and eval.window >= 1")
        require(self.tolerance >= 0 and self.std_tolerance >= 0, "eval.tolerance and std_tolerance must be >= 0")
        require(self.bootstrap >= 1 and self.examples >= 0, "eval.bootstrap >= 1 and eval.examples >= 0")


@dataclass(frozen=True)
class LoopSettings(Config):
    """Every setting of the loop except where it runs and on what (see `LoopConfig`)."""

    rounds: int = 1
    """Rounds of candidates -> feedback -> reward model -> policy -> evaluation."""
    gold: str = "sentiment"
    """Gold scorer ('sentiment', 'length', 'keywords', python:MODULE:FUNCTION) for the panel and the
    evaluation; '' = no gold (people only: the best checkpoint is then chosen by the conservative proxy)."""
    seed: int = 0
    """Seed of prompt splits, sampling and training."""
    progress: bool = True
    """Stage headers and progress bars."""
    feedback: FeedbackConfig = FeedbackConfig()
    """Who judges and how the app's project is set up."""
    candidates: CandidatesConfig = CandidatesConfig()
    """Candidates for annotators."""
    reward: RewardStage = REWARD_STAGE
    """The reward model: any `RewardSettings` field (reward.lr, reward.pairwise_loss ...), plus model and
    trunk_layers."""
    policy: PPOStage | DPOStage | GRPOStage | RLOOStage = field(
        default=PPO_STAGE,
        metadata={VARIANTS: {"ppo": PPO_STAGE, "dpo": DPO_STAGE, "grpo": GRPO_STAGE, "rloo": RLOO_STAGE}},
    )
    """The policy update: policy.method=ppo (any `PPOSettings` field: policy.kl_target, policy.lora.r ...),
    policy.method=dpo (any `DPOSettings` field: policy.beta, policy.loss ...), or policy.method=grpo / rloo
    (any `GRPOSettings` field: policy.group_size, policy.advantage, policy.beta ...)."""
    eval: EvalConfig = EvalConfig()
    """Evaluation and reward-hacking detection."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(1 <= self.rounds <= 100, f"rounds must be in [1, 100], got {self.rounds}")
        require(self.seed >= 0, "seed must be >= 0")
        require(
            bool(self.gold) or self.feedback.source in ("app", "ai"),
            "a simulated panel judges by a gold scorer: set gold",
        )
        require(bool(self.gold) or self.feedback.gold_items == 0, "feedback.gold_items needs a gold scorer")
        fb = self.feedback
        require(
            fb.source != "panel" or fb.panel.members >= fb.overlap,
            f"a panel of {fb.panel.members} cannot give {fb.overlap} judgments per item: raise feedback.panel.members",
        )
        require(
            self.feedback.task_type != "pairwise" or self.candidates.per_prompt == 2,
            "feedback.task_type=pairwise needs candidates.per_prompt=2 (use ranking for K > 2)",
        )
        if self.gold:
            from rlhfkit.eval.gold import resolve_gold

            try:
                resolve_gold(self.gold)
            except ValueError as err:
                require(False, str(err))


@dataclass(frozen=True)
class LoopConfig(LoopSettings):
    """`rlhfkit loop`: rounds of (candidates -> feedback -> reward model -> policy -> evaluation)."""

    output: Path = Path("")
    """Loop directory: one folder per round, stage markers, eval.json and report.html."""
    policy_model: str = "smollm2"
    """The initial policy (round 0, usually an SFT model): 'smollm2', a model directory or run, 'tiny'."""
    prompts: str = ""
    """Prompts file (any format rlhfkit reads); `eval.fraction` of it is held out for evaluation."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(str(self.output) not in ("", "."), "output (the loop directory) is required")
        require(bool(self.policy_model), "policy_model (the initial policy) is required")
        require(bool(self.prompts), "prompts is required (a prompts file)")

    def db_url(self) -> str:
        """The feedback database URL (default: a SQLite file in the loop directory)."""
        return self.feedback.db or f"sqlite:///{Path(self.output).resolve() / 'feedback.db'}"

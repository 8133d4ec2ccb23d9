"""`LoopConfig`: every knob of `rlhfkit loop` (and of the demo), documented and validated.

The defaults are the demo's budget: the bundled SmolLM2-135M on two CPU cores, a positive-sentiment
task judged by a simulated panel (see `rlhfkit.loop.demo` for the timings). Larger runs raise the
sizes in a YAML file (``configs/loop_sentiment.yaml``). Each stage has a few typed knobs here; any
other field of the underlying trainer's config is reachable through the stage's ``overrides``
(``key=value`` strings applied on top, validated by that trainer's config class).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhfkit.config import require
from rlhfkit.eval.hacking import SELECTION_KEYS
from rlhfkit.models.reward import POOLINGS
from rlhfkit.rollout.generate import SamplingConfig

FEEDBACK_SOURCES = ("panel", "app", "both")
"""Who judges: the simulated panel, people in the app, or both (the panel fills part of each item)."""

TASK_TYPES = ("pairwise", "ranking")
"""Task types the loop creates: a pair (K = 2) or a K-way ranking of the candidates."""

POLICY_METHODS = ("ppo", "dpo")
"""How the policy is optimized each round."""

TRANSPORTS = ("store", "rest")
"""How the simulated panel reaches the app: in-process store calls, or the JSON API over HTTP."""


@dataclass(frozen=True)
class PanelConfig:
    """The simulated annotators (`rlhfkit.loop.annotators.make_panel`)."""

    members: int = 5
    """Panel size; each member is an annotator account of the app."""
    careless_share: float = 0.2
    """Share of members answering at random (quality control should flag them)."""
    bias_std: float = 0.0
    """Std of the members' length preferences (0: nobody cares about length)."""
    temperature: float = 0.1
    """Bradley-Terry noise of every member, in gold units (0 = always follows the gold)."""
    transport: str = "store"
    """'store' (in-process, like a script on the server) or 'rest' (the JSON API over HTTP; needs
    feedback.serve=true so that the app listens)."""
    seed: int = 0
    """Seeds the panel's composition and every judgment."""

    def __post_init__(self) -> None:
        require(self.members >= 1, f"panel.members must be >= 1, got {self.members}")
        require(0.0 <= self.careless_share <= 1.0, "panel.careless_share must be in [0, 1]")
        require(self.bias_std >= 0 and self.temperature >= 0, "panel.bias_std and panel.temperature must be >= 0")
        require(self.transport in TRANSPORTS, f"panel.transport must be one of {', '.join(TRANSPORTS)}")
        require(self.seed >= 0, "panel.seed must be >= 0")


@dataclass(frozen=True)
class FeedbackConfig:
    """Where judgments come from and how the app's project is set up."""

    source: str = "panel"
    """'panel' (simulated), 'app' (people; the loop waits for their judgments) or 'both'."""
    db: str = ""
    """Database URL of the feedback app ('' = sqlite:///OUTPUT/feedback.db). The loop's state lives here."""
    project: str = "loop"
    """Project holding every round's items; the reward model trains on its whole export."""
    task_type: str = "ranking"
    """'ranking' (all K candidates ordered; K(K-1)/2 pairs per item) or 'pairwise' (needs K = 2)."""
    overlap: int = 3
    """Judgments per item, each from a different annotator."""
    panel_judgments: int = 0
    """source=both: judgments per item the panel may give (0 = overlap - 1); people give the rest."""
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
    """The simulated panel (source panel or both)."""

    def __post_init__(self) -> None:
        require(self.source in FEEDBACK_SOURCES, f"feedback.source must be one of {', '.join(FEEDBACK_SOURCES)}")
        require(self.task_type in TASK_TYPES, f"feedback.task_type must be one of {', '.join(TASK_TYPES)}")
        require(bool(self.project), "feedback.project must not be empty")
        require(1 <= self.overlap <= 100, f"feedback.overlap must be in [1, 100], got {self.overlap}")
        require(0 <= self.panel_judgments < max(2, self.overlap),
                "feedback.panel_judgments must be < overlap (people need at least one slot)")
        require(self.source != "both" or self.overlap >= 2, "feedback.source=both needs overlap >= 2")
        require(self.gold_items >= 0 and 0.0 <= self.gold_rate <= 1.0, "feedback.gold_items >= 0, gold_rate in [0, 1]")
        require(self.poll_seconds > 0 and self.wait_timeout >= 0, "feedback.poll_seconds > 0, wait_timeout >= 0")
        require(1 <= self.port <= 65535, "feedback.port must be a TCP port")
        require(self.panel.transport != "rest" or self.serve, "panel.transport=rest needs feedback.serve=true")


@dataclass(frozen=True)
class CandidatesConfig:
    """What the current policy writes for annotators each round."""

    per_prompt: int = 8
    """K: candidates sampled per prompt (identical candidates are dropped; items need at least 2)."""
    prompts_per_round: int = 48
    """Training prompts used per round, rotating through the set (0 = all)."""
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=32, temperature=0.8, batch_size=32)
    """Sampling of the candidates: a little hotter than the policy's rollouts, so annotators get real
    choices, but close enough that the reward model learns on the text PPO will produce."""

    def __post_init__(self) -> None:
        require(self.per_prompt >= 2, f"candidates.per_prompt must be >= 2, got {self.per_prompt}")
        require(self.prompts_per_round >= 0, "candidates.prompts_per_round must be >= 0")
        require(self.sampling.temperature > 0, "candidates.sampling.temperature must be > 0 (greedy gives one candidate)")


@dataclass(frozen=True)
class RewardStageConfig:
    """The reward model retrained each round on all feedback so far (`rlhfkit.train.reward`)."""

    model: str = ""
    """Trunk of the reward model ('' = the loop's initial policy, e.g. the SFT model)."""
    max_steps: int = 300
    """Optimizer steps (on cached features these cost milliseconds each)."""
    lr: float = 3e-3
    """Learning rate (of the heads only when the trunk is frozen)."""
    batch_size: int = 16
    """Judgments per step."""
    n_heads: int = 3
    """Ensemble heads on bootstrap resamples: their disagreement is a reward-hacking signal."""
    trunk_layers: int = 15
    """Use only the bottom N transformer blocks of the trunk (0 = all). The last token's state in the middle
    of a network is a better linear feature of what a text says than the top layer's, which is shaped to
    predict the next token: on the demo's task a linear probe of the gold score reaches correlation 0.49 at
    layer 15 of SmolLM2 against 0.38 at its last layer 30 (bench notes in rlhfkit.loop.demo); half the
    layers also halve every reward-model forward pass."""
    pooling: str = "mean"
    """What the heads read: 'mean' (the mean state over the tokens) or 'last' (the final token's state). On
    the frozen trunk the heads are linear probes, and the mean is the better one: on the demo's feedback
    the reward model's scores of held-out samples correlate 0.64 with the gold score by 'mean' against 0.37
    by 'last' (pairwise accuracy 0.75 against 0.62; rlhfkit.models.reward.POOLINGS)."""
    freeze_layers: int = -1
    """-1: frozen trunk with cached features (only the heads train, seconds on a CPU); N >= 0: train above layer N."""
    max_length: int = 128
    """Longest prompt + response in tokens."""
    weight_decay: float = 0.01
    """AdamW weight decay of the heads (a little regularization for few labels)."""
    normalize_prompts: int = 16
    """Prompts the current policy answers to normalize the reward (mean 0, std 1 on its samples)."""
    overrides: tuple[str, ...] = ()
    """Any other RewardConfig field as key=value (e.g. 'pairwise_loss=ties_half')."""

    def __post_init__(self) -> None:
        require(self.max_steps > 0 and self.lr > 0 and self.batch_size > 0, "reward.max_steps, lr, batch_size must be > 0")
        require(self.n_heads >= 1 and self.freeze_layers >= -1, "reward.n_heads >= 1 and reward.freeze_layers >= -1")
        require(self.trunk_layers >= 0, "reward.trunk_layers must be >= 0")
        require(self.pooling in POOLINGS, f"reward.pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        require(self.max_length >= 16 and self.normalize_prompts >= 2, "reward.max_length >= 16, normalize_prompts >= 2")


@dataclass(frozen=True)
class PolicyStageConfig:
    """The policy update each round: PPO against the reward model, or DPO on the feedback pairs."""

    method: str = "ppo"
    """'ppo' (Ziegler et al. 2019 / InstructGPT) or 'dpo' (Rafailov et al. 2023, on the exported pairs)."""
    max_steps: int = 20
    """PPO steps (rollout + update) or DPO optimizer steps per round."""
    lr: float = 5e-4
    """Learning rate."""
    batch_size: int = 8
    """Samples per forward/backward pass."""
    rollout_batch_size: int = 32
    """PPO: prompts (= responses) per step. On a CPU, decoding reads every weight once per token whatever
    the batch, so 20 steps of 32 sample the demo's 640 responses in 15% less time than 40 steps of 16, with
    as many optimizer steps (4 minibatches of 8 per epoch) and no loss of gold win rate in one A/B run."""
    ppo_epochs: int = 2
    """PPO: passes over each rollout."""
    policy_mode: str = "lora"
    """PPO: 'lora', 'top_layers' or 'full' (see rlhfkit.models.actor_critic)."""
    kl_controller: str = "pi"
    """PPO: 'fixed' (beta = init_kl_coef throughout), 'adaptive' (beta steers the KL to kl_target, Ziegler
    et al. 2019) or 'pi' (the same with a proportional term and a bounded integrator, so the KL stays near
    its target in a short round instead of overshooting it; see rlhfkit.algorithms.kl)."""
    init_kl_coef: float = 0.1
    """PPO: KL coefficient beta (0 with kl_controller=fixed: no KL penalty at all)."""
    kl_target: float = 3.5
    """PPO with the adaptive or pi controller: target KL per response, in nats, on the training prompts.
    The rollout KL swings around its target in a 20-step round (from 2 to 9 nats at a target of 5), so the
    final policy's KL lands well off it: on the demo's held-out prompts, with one reward model, 4.1 for a
    target of 3.5, 6.4 for 4.5 and 5.5 for 5. 3.5 keeps the demo under its ceiling of 6 nats."""
    kl_horizon: int = 256
    """PPO with the adaptive or pi controller: samples over which the integral closes the KL's error
    (Ziegler et al. 2019 use 10,000 over a long run; a round is 20 steps x 32 samples, and with 'pi' the
    proportional term does the fast part; 'adaptive' alone needs about 64 here)."""
    min_kl_coef: float = 0.02
    """PPO with the pi controller: the floor of beta and of its integrator (anti-windup)."""
    ensemble_k: float = 0.0
    """PPO: optimize mean - k * std of the reward ensemble (Coste et al. 2024); 0 = the mean."""
    dpo_beta: float = 0.1
    """DPO: beta."""
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=32, temperature=0.7, batch_size=32)
    """Sampling of PPO rollouts and of every evaluation (KL is measured at this temperature)."""
    overrides: tuple[str, ...] = ()
    """Any other PPOConfig / DPOConfig field as key=value (e.g. 'lora.r=8', 'whiten_rewards=true')."""

    def __post_init__(self) -> None:
        require(self.method in POLICY_METHODS, f"policy.method must be one of {', '.join(POLICY_METHODS)}")
        require(self.max_steps > 0 and self.lr > 0 and self.batch_size > 0, "policy.max_steps, lr, batch_size must be > 0")
        require(self.rollout_batch_size > 0 and self.ppo_epochs > 0, "policy.rollout_batch_size and ppo_epochs must be > 0")
        require(self.init_kl_coef >= 0 and self.kl_target > 0, "policy.init_kl_coef >= 0 and kl_target > 0")
        require(self.kl_horizon > 0, "policy.kl_horizon must be > 0")
        require(self.kl_controller != "pi" or 0 < self.min_kl_coef <= self.init_kl_coef,
                "policy.kl_controller=pi needs 0 < min_kl_coef <= init_kl_coef")
        require(self.kl_controller == "fixed" or self.init_kl_coef > 0,
                f"policy.kl_controller={self.kl_controller} needs init_kl_coef > 0 (or use kl_controller=fixed)")
        require(self.ensemble_k >= 0 and self.dpo_beta > 0, "policy.ensemble_k >= 0 and dpo_beta > 0")
        require(self.sampling.temperature > 0, "policy.sampling.temperature must be > 0")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation after every round, on held-out prompts, against the round-0 policy."""

    prompts: str = ""
    """Held-out prompts file ('' = hold out `fraction` of the loop's prompts)."""
    fraction: float = 0.25
    """Share of the prompts held out for evaluation when `prompts` is empty."""
    samples_per_prompt: int = 4
    """Responses per held-out prompt and policy (comparisons = prompts x this)."""
    select_by: str = "auto"
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

    def __post_init__(self) -> None:
        require(0.0 < self.fraction < 1.0, "eval.fraction must be in (0, 1)")
        require(self.samples_per_prompt >= 1, "eval.samples_per_prompt must be >= 1")
        require(self.select_by == "auto" or self.select_by in SELECTION_KEYS,
                f"eval.select_by must be auto or one of {', '.join(SELECTION_KEYS)}")
        require(self.conservative_k >= 0 and self.window >= 1, "eval.conservative_k >= 0 and eval.window >= 1")
        require(self.tolerance >= 0 and self.std_tolerance >= 0, "eval.tolerance and std_tolerance must be >= 0")
        require(self.bootstrap >= 1 and self.examples >= 0, "eval.bootstrap >= 1 and eval.examples >= 0")


@dataclass(frozen=True)
class LoopSettings:
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
    reward: RewardStageConfig = RewardStageConfig()
    """The reward model."""
    policy: PolicyStageConfig = PolicyStageConfig()
    """The policy update."""
    eval: EvalConfig = EvalConfig()
    """Evaluation and reward-hacking detection."""

    def __post_init__(self) -> None:
        require(1 <= self.rounds <= 100, f"rounds must be in [1, 100], got {self.rounds}")
        require(self.seed >= 0, "seed must be >= 0")
        require(bool(self.gold) or self.feedback.source == "app", "a simulated panel judges by a gold scorer: set gold")
        require(bool(self.gold) or self.feedback.gold_items == 0, "feedback.gold_items needs a gold scorer")
        fb = self.feedback
        require(fb.source != "panel" or fb.panel.members >= fb.overlap,
                f"a panel of {fb.panel.members} cannot give {fb.overlap} judgments per item: raise feedback.panel.members")
        require(self.feedback.task_type != "pairwise" or self.candidates.per_prompt == 2,
                "feedback.task_type=pairwise needs candidates.per_prompt=2 (use ranking for K > 2)")
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

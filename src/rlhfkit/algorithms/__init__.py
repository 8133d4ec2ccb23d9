"""Pure tensor math for RLHF (imports torch only); every trainer builds on these functions.

Modules:
    common         masked sum/mean/var/whiten, selective log-softmax, entropy, sequence log-probs
    kl             per-token KL estimators (k1/k2/k3) and fixed, adaptive and PI KL coefficient controllers
    advantages     PPO per-token rewards, GAE, critic-free group advantages (GRPO, RLOO)
    ppo_losses     clipped policy and value losses, explained variance
    reward_losses  reward-model losses: Bradley-Terry (+ties, Davidson), Plackett-Luce, ratings
    dpo_losses     DPO and variants (cDPO, robust, hinge, IPO, SimPO, ORPO, Plackett-Luce DPO)

Import from the submodules, e.g. ``from rlhfkit.algorithms.dpo_losses import DPO_LOSSES``.
"""

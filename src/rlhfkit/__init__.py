"""rlhfkit: Reinforcement Learning from Human Feedback, from the first human judgment to the aligned model."""

__version__ = "0.1.0"

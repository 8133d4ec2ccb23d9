"""The value of a pairwise verdict for side "a": the one outcome table win rates and leaderboards share.

A win counts 1, a loss 0 and a tie 1/2, so ties neither help nor hurt (Chatbot Arena's convention;
the Bradley-Terry fit and the win rate then agree on what a tie is worth).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from rlhfkit.data.records import Choice

CHOICE_OUTCOME: Mapping[Choice, float] = MappingProxyType({"a": 1.0, "b": 0.0, "tie": 0.5})
"""Outcome for the "a" side of a pairwise choice (ties count half)."""

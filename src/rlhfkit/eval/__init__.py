"""Evaluation: gold scorers, win rates, leaderboards, reward-hacking signals and the run report.

Modules (import them directly; this package imports nothing so that ``rlhfkit.eval.gold`` does not
pull in matplotlib):

* :mod:`rlhfkit.eval.gold`: gold scorers ``fn(prompt, response) -> float`` and repetition stats.
* :mod:`rlhfkit.eval.winrate`: win rate with Wilson / bootstrap intervals; judges.
* :mod:`rlhfkit.eval.leaderboard`: Bradley-Terry (Chatbot Arena) and Elo ratings with bootstrap CIs.
* :mod:`rlhfkit.eval.hacking`: over-optimization detector, drift, best checkpoint, Gao et al. fits.
* :mod:`rlhfkit.eval.plots` and :mod:`rlhfkit.eval.report`: ``write_report(run_dir)``.

``eval.json`` in a run directory (every key optional)::

    {
      "win_rate": {WinRate fields} | {label: {WinRate fields}} | [{"label": ..., WinRate fields}],
      "leaderboard": [{"name", "rating", "ci_low", "ci_high", "n_battles"?}],
      "hacking": {"points": [EvalPoint fields], "warnings": [{"step", "kind", "message"}],
                  "best": {"step", "by"} | null},            # = hacking.hacking_summary(points)
      "agreement": {"alpha": float, "per_annotator": {name: {"majority": float, "gold": float | null}}}
    }
"""

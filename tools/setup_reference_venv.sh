#!/usr/bin/env bash
# Creates a separate venv holding the reference implementation (stable-audio-tools 0.0.19)
# for making golden test data and for benchmarks. sao_live never imports it at run time.
#
# usage: tools/setup_reference_venv.sh [VENV_DIR]   (default .refvenv in the repository)
#
# Recipe (tools/README.md): the wheel pins 28 training/UI dependencies that
# the inference path never imports, so it is installed with --no-deps and only the modules that
# inference really imports are added. torchaudio/k_diffusion import workarounds live in
# tools/_reference.py.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${1:-$REPO_DIR/.refvenv}"
PYTHON="${PYTHON:-python3}"

echo "reference venv: $VENV_DIR (repo $REPO_DIR)"
if [ ! -x "$VENV_DIR/bin/python" ]; then
    "$PYTHON" -m venv "$VENV_DIR"
fi
PIP=("$VENV_DIR/bin/python" -m pip install --disable-pip-version-check)

# 1. torch first (CPU build).
"${PIP[@]}" "torch==2.13.0"

# 2. the reference, k-diffusion and torchaudio without their dependency pins.
"${PIP[@]}" --no-deps "stable-audio-tools==0.0.19" "k-diffusion==0.1.1" "torchaudio==2.11.0"

# 3. what the inference path imports, plus sao_live's own run-time needs.
"${PIP[@]}" einops einops-exts alias-free-torch safetensors transformers huggingface_hub \
    sentencepiece tokenizers tqdm packaging scipy torchsde torchdiffeq scikit-image jsonmerge \
    dctorch pillow "numpy<2" soundfile soxr platformdirs

# 4. sao_live itself (only its tiny-model helpers are used by the golden script).
SITE="$("$VENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ -f "$REPO_DIR/pyproject.toml" ]; then
    rm -f "$SITE/sao_live_repo.pth"
    "${PIP[@]}" --no-deps -e "$REPO_DIR"
else
    # No packaging metadata: put the repo on the path with a .pth file instead.
    echo "$REPO_DIR" > "$SITE/sao_live_repo.pth"
    echo "no pyproject.toml: wrote $SITE/sao_live_repo.pth"
fi

# 5. smoke check: the reference imports with the workarounds.
cd "$REPO_DIR"
HF_HUB_OFFLINE=1 "$VENV_DIR/bin/python" - <<'PY'
import sys
sys.path.insert(0, "tools")
import _reference
_reference.import_reference()
import stable_audio_tools, torch, transformers, sao_live.engine.tiny  # noqa: F401
from importlib.metadata import version
print("ok: torch", torch.__version__, "stable-audio-tools", version("stable-audio-tools"),
      "k-diffusion", version("k-diffusion"), "transformers", transformers.__version__)
PY

#!/usr/bin/env python
"""Reference numerics at the published Small size: our audio against stable-audio-tools' audio.

    python tools/check_full_size_parity.py --reference-python .refvenv/bin/python

The golden tests use tiny models; this runs both implementations on the same random weights at
the published size (written by benchmarks/compare_reference.py), same prompt and seed, and prints
the relative error of the latents and the audio and the audio's SNR. Random weights give
activations far larger than trained ones, which magnifies float rounding in the decoder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROMPT, SECONDS, SEED = "warm arpeggios on house beats 120BPM", 11.0, 123

_REFERENCE = """
import contextlib, json, sys
import numpy as np
sys.path.insert(0, {tools!r})
import _reference as R
with contextlib.redirect_stdout(sys.stderr):
    R.import_reference()
import torch
from safetensors.torch import load_file
from stable_audio_tools.inference.generation import generate_diffusion_cond
torch.set_grad_enabled(False)
model = R.build_reference_model(json.load(open({config!r})), {t5!r}, vae_fp32=True)
model.load_state_dict(load_file({weights!r}), strict=True)
kwargs = dict(steps=8, cfg_scale=1.0, batch_size=1, sample_size=524288, seed={seed}, device="cpu",
              sampler_type="pingpong", conditioning=[{{"prompt": {prompt!r}, "seconds_total": {seconds}}}])
with contextlib.redirect_stdout(sys.stderr):
    latents = generate_diffusion_cond(model, return_latents=True, **kwargs)
    audio = generate_diffusion_cond(model, **kwargs)
np.save({out!r} + "/latents.npy", latents.numpy())
np.save({out!r} + "/audio.npy", audio[0].numpy())
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference-python", required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/sao-live-bench"))
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from compare_reference import write_random_model

    from sao_live import StableAudioPipeline
    from sao_live.engine.tiny import random_t5_base_folder

    model, t5 = write_random_model("sao-small", args.work), random_t5_base_folder()
    with tempfile.TemporaryDirectory() as out:
        script = _REFERENCE.format(
            tools=str(REPO / "tools"),
            config=str(model / "model_config.json"),
            t5=str(t5),
            weights=str(model / "model.safetensors"),
            seed=SEED,
            prompt=PROMPT,
            seconds=SECONDS,
            out=out,
        )
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        subprocess.run([args.reference_python, "-c", script], check=True, env=env, stdout=subprocess.DEVNULL)
        ref_latents, ref_audio = np.load(f"{out}/latents.npy"), np.load(f"{out}/audio.npy")
    pipe = StableAudioPipeline.from_pretrained(model, t5, device="cpu", numerics="reference")
    result = pipe.generate(PROMPT, seconds=SECONDS, seed=SEED)
    ours_latents = result.latents.numpy()
    ref_audio = ref_audio[:, : result.audio.shape[1]]

    def rel(a, b):
        return float(np.abs(a - b).max() / np.abs(b).max())

    snr = 10 * np.log10((ref_audio**2).sum() / ((ref_audio - result.audio) ** 2).sum())
    report = {
        "latents_rel_err": rel(ours_latents, ref_latents),
        "audio_rel_err": rel(result.audio, ref_audio),
        "audio_snr_db": round(float(snr), 1),
        "audio_std": float(ref_audio.std()),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

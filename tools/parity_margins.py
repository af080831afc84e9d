#!/usr/bin/env python
"""Prints, for every parity check in tests/engine/test_parity.py, the error this machine gets against
the golden data, its tolerance, and how much of the tolerance it uses.

    HF_HUB_OFFLINE=1 python tools/parity_margins.py

Run it under other CPU kernels to see how far fp32 results drift between CPUs, e.g.
`ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.engine import test_parity as P  # noqa: E402


def row(check: str, err: float, tolerance: float) -> None:
    print(f"{check:42s} {err:10.2e} {tolerance:10.1e} {err / tolerance:7.3f}")


def main() -> None:
    torch.set_grad_enabled(False)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}")
    print(f"{'check':42s} {'error':>10s} {'tolerance':>10s} {'used':>7s}")
    for model in P.MODELS:
        info, ref = P.golden_data(model)
        pipe16 = P.load(P.GOLDEN / model)
        pipe32 = P.load(P.GOLDEN / model, t5_fp32=True)
        prompts, total, start = P._metadata(info["conditioning"]["metadata"])
        tol16 = P.fp16_t5_tolerance(pipe16)
        row(f"{model} T5 fp16", P.rel_err(pipe16.text_encoder(prompts)[0], ref["cond.prompt"]), tol16)
        row(f"{model} T5 fp32", P.rel_err(pipe32.text_encoder(prompts)[0], ref["cond.prompt.fp32"]), P.FP32_TOLERANCE)
        cond = pipe32.conditioning(prompts, total, start)
        row(f"{model} cross tokens", P.rel_err(cond.cross, ref["cond.cross.fp32"]), P.FP32_TOLERANCE)
        row(f"{model} global", P.rel_err(cond.global_cond, ref["cond.global"]), P.FP32_TOLERANCE)
        for name in info["dit"]["calls"]:
            row(f"{model} {name}", P.rel_err(P.dit_call(pipe16, info, ref, name), ref[name]), P.FP32_TOLERANCE)
        row(f"{model} VAE decode", P.rel_err(pipe16.decode(ref["vae.latent"]), ref["vae.audio"]), P.FP32_TOLERANCE)
        for name, gen in info["generations"].items():
            schedule_err: list[float] = []
            with P.on_the_reference_schedule(ref[f"gen.{name}.sigmas"], schedule_err):
                result = P.generate_like_golden(pipe32, gen, ref)
            row(f"{model} schedule {name}", schedule_err[0], P.SCHEDULE_TOLERANCE)
            row(f"{model} gen {name}", P.rel_err(result.latents, ref[f"gen.{name}.latent"]), P.FP32_TOLERANCE)


if __name__ == "__main__":
    main()

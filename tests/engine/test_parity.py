"""Reference mode against golden tensors made by stable-audio-tools (tools/make_golden.py).

Every stage is replayed from the settings recorded in golden.json. The models are tiny random
ones shaped like SAO Small (tests/golden/small) and SAO 1.0 (tests/golden/sao1). Errors are
relative to the reference's largest value: max |ours - ref| / max |ref|.

Each tolerance follows from the arithmetic of the stage it checks (docs/testing.md):

- fp32 stages (number conditioners, DiT, VAE, samplers, whole generations with an fp32 T5):
  1e-4. Different CPUs sum in different orders; across CPU kernels the drift measured here stays
  below 1e-5 for every fp32 stage, while the smallest mistakes below give 1e-3 and more.
- the noise schedule, element by element: 2e-6 (a few fp32 ulps of exp's argument). Generations
  then run on the reference's own sigmas, see `on_the_reference_schedule`.
- the fp16 T5, as the reference runs it: each of the encoder's L layers rounds the residual
  stream to fp16 twice and the final norm once, so one fp16 implementation sits within about
  (2L + 1) roundings of the exact result, and two of them (another CPU's kernels) within twice
  that: 2 (2L + 1) u, u = 2^-11 the unit roundoff of fp16.

The second half of this file makes deliberate mistakes (a swapped checkpoint key, a wrong sign,
a wrong sigma) and checks that each comparison above then fails: a tolerance that lets those
through would be too loose.
"""

from __future__ import annotations

import contextlib
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from sao_live import StableAudioPipeline
from sao_live.engine import sampling

from ..conftest import GOLDEN

FP32_TOLERANCE = 1e-4
# A schedule sigma is exp(a), a = ramp * (log sigma_max - log sigma_min) + log sigma_min with
# |a| <= 6.3 (sigma 500). a is rounded about twice (one ulp of a, 4.8e-7, each), and exp turns an
# absolute error of a into the same relative error of sigma; two CPUs may round opposite ways:
# 4 ulp(a) ~ 2e-6. (The sigmoid of the rf schedule is gentler.)
SCHEDULE_TOLERANCE = 2e-6
FP16_UNIT_ROUNDOFF = 2.0**-11
MODELS = ("small", "sao1")


def fp16_t5_tolerance(pipe: StableAudioPipeline) -> float:
    layers = pipe.text_encoder.model.config.num_layers
    return 2 * (2 * layers + 1) * FP16_UNIT_ROUNDOFF


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.float() - ref.float()).abs().max() / ref.float().abs().max())


def assert_close(ours, ref, what, tolerance=FP32_TOLERANCE):
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != reference {tuple(ref.shape)}"
    err = rel_err(ours, ref)
    assert err <= tolerance, f"{what}: relative error {err:.2e} > {tolerance:.1e}"


def load(folder, t5_fp32: bool = False) -> StableAudioPipeline:
    pipe = StableAudioPipeline.from_pretrained(folder, GOLDEN / "t5", device="cpu", numerics="reference")
    if t5_fp32:  # the golden generations were made with the reference's T5 cast to fp32 too
        pipe.text_encoder.model.float()
    return pipe


def golden_data(model: str):
    folder = GOLDEN / model
    return json.loads((folder / "golden.json").read_text()), load_file(str(folder / "golden.safetensors"))


@pytest.fixture(scope="module", params=MODELS)
def golden(request):
    info, ref = golden_data(request.param)
    return load(GOLDEN / request.param), info, ref


@pytest.fixture(scope="module", params=MODELS)
def golden_fp32_t5(request):
    info, ref = golden_data(request.param)
    return load(GOLDEN / request.param, t5_fp32=True), info, ref


def _metadata(meta):
    prompts = [m["prompt"] for m in meta]
    total = [m["seconds_total"] for m in meta]
    start = [m.get("seconds_start", 0.0) for m in meta]
    return prompts, total, start


def test_tokens(golden):
    pipe, info, ref = golden
    prompts, _, _ = _metadata(info["conditioning"]["metadata"])
    ids, mask = pipe.text_encoder.tokenize(prompts)
    assert torch.equal(ids, ref["tokens.ids"])
    assert torch.equal(mask.long(), ref["tokens.mask"].long())


def test_t5_in_fp16_as_the_reference_runs_it(golden):
    pipe, info, ref = golden
    prompts, _, _ = _metadata(info["conditioning"]["metadata"])
    assert pipe.text_encoder.model.dtype == torch.float16
    embeds, _ = pipe.text_encoder(prompts)
    assert embeds.dtype == torch.float32
    assert_close(embeds, ref["cond.prompt"], "T5 prompt embedding (fp16)", fp16_t5_tolerance(pipe))


def test_text_and_number_conditioners(golden_fp32_t5):
    pipe, info, ref = golden_fp32_t5
    prompts, total, start = _metadata(info["conditioning"]["metadata"])
    embeds, _ = pipe.text_encoder(prompts)
    assert_close(embeds, ref["cond.prompt.fp32"], "T5 prompt embedding (fp32)")
    values = {"seconds_total": total, "seconds_start": start}
    for cid, conditioner in pipe.model.conditioner.conditioners.items():
        assert_close(conditioner(values[cid], pipe.device), ref[f"cond.{cid}"], f"number conditioner {cid}")


def test_assembled_conditioning(golden_fp32_t5):
    pipe, info, ref = golden_fp32_t5
    prompts, total, start = _metadata(info["conditioning"]["metadata"])
    cond = pipe.conditioning(prompts, total, start)
    assert_close(cond.cross, ref["cond.cross.fp32"], "cross-attention tokens")
    assert_close(cond.global_cond, ref["cond.global"], "global conditioning")


def dit_call(pipe, info, ref, name):
    call = info["dit"]["calls"][name]
    neg = ref["dit.neg_cross"] if call["negative"] else None
    return pipe.model.model(ref["dit.x"], ref["dit.t"], ref["cond.cross"], ref["cond.global"], call["cfg_scale"], neg)


@pytest.mark.parametrize("name", ["dit.out", "dit.out_cfg", "dit.out_cfg_neg"])
def test_dit_call(golden, name):
    pipe, info, ref = golden
    assert_close(dit_call(pipe, info, ref, name), ref[name], f"DiT {name}")


def test_vae_decode(golden):
    pipe, _, ref = golden
    assert_close(pipe.decode(ref["vae.latent"]), ref["vae.audio"], "VAE decode")


def test_vae_encode(golden):
    pipe, _, ref = golden
    moments = pipe.model.pretransform.model.encoder(ref["vae.audio_in"])
    assert_close(moments, ref["vae.moments"], "VAE encoder moments")
    encoded = pipe.encode_audio(ref["vae.audio_in"], torch.Generator().manual_seed(1234))
    assert_close(encoded, ref["vae.encoded"], "VAE encode (posterior sample)")


def _generations():
    for model in MODELS:
        for name in json.loads((GOLDEN / model / "golden.json").read_text())["generations"]:
            yield model, name


GENERATIONS = list(_generations())


@pytest.fixture(scope="module")
def pipes_fp32_t5():
    return {model: load(GOLDEN / model, t5_fp32=True) for model in MODELS}


@contextlib.contextmanager
def on_the_reference_schedule(golden_sigmas: torch.Tensor, checked: list[float]):
    """While active, the pipeline's schedule function runs as usual, its result is compared
    element by element with the sigmas the reference's sampler was handed (the largest relative
    difference is appended to `checked`), and the reference's sigmas are used from there on.

    Why: a schedule is exp/sigmoid of fp32 values, whose last bits differ between CPUs, and the
    SDE samplers read a Brownian tree at those times; W moves like sqrt(dt), so one ulp of a
    sigma moves their noise by ~1e-3. The schedule is checked on its own (SCHEDULE_TOLERANCE)."""
    saved = {name: getattr(sampling, name) for name in ("get_sigmas_rf", "get_sigmas_polyexponential")}

    def replaying(schedule):
        def schedule_of_the_reference(*args, **kwargs):
            ours = schedule(*args, **kwargs)
            assert ours.shape == golden_sigmas.shape, f"schedule of {len(ours)} sigmas, reference {len(golden_sigmas)}"
            checked.append(float(((ours - golden_sigmas).abs() / golden_sigmas.abs().clamp_min(1e-30)).max()))
            return golden_sigmas.clone()

        return schedule_of_the_reference

    for name, schedule in saved.items():
        setattr(sampling, name, replaying(schedule))
    try:
        yield
    finally:
        for name, schedule in saved.items():
            setattr(sampling, name, schedule)


def generate_like_golden(pipe, info, ref):
    kw = info["kwargs"]
    meta = kw["conditioning"][0]
    assert meta.get("seconds_start", 0.0) == 0.0  # generate() conditions on a clip starting at 0
    negative = kw.get("negative_conditioning", [{}])[0].get("prompt")
    init = None
    if "init_audio" in kw:
        rate, tensor_name = kw["init_audio"]
        init = (ref[tensor_name.split("[")[0]][0].numpy(), rate)
    return pipe.generate(
        meta["prompt"],
        seconds=meta["seconds_total"],
        seed=kw["seed"],
        steps=kw["steps"],
        cfg_scale=kw["cfg_scale"],
        sampler=kw["sampler_type"],
        negative_prompt=negative,
        sigma_min=kw.get("sigma_min"),
        sigma_max=kw.get("sigma_max"),
        rho=kw.get("rho"),
        sample_size=kw["sample_size"],
        init_audio=init,
        init_noise_level=kw.get("init_noise_level"),
    )


@pytest.mark.parametrize("model, name", GENERATIONS)
def test_full_generation(pipes_fp32_t5, model, name):
    info, ref = golden_data(model)
    gen = info["generations"][name]
    assert gen["t5_dtype"] == "float32"
    pipe = pipes_fp32_t5[model]
    schedule_err: list[float] = []
    with on_the_reference_schedule(ref[f"gen.{name}.sigmas"], schedule_err):
        result = generate_like_golden(pipe, gen, ref)
    assert len(schedule_err) == 1, "the pipeline computed no schedule (or more than one)"
    assert schedule_err[0] <= SCHEDULE_TOLERANCE, f"schedule: relative error {schedule_err[0]:.2e} per sigma"
    assert_close(result.latents, ref[f"gen.{name}.latent"], f"{model} {name} latents")
    audio = torch.from_numpy(result.audio)
    seconds = gen["kwargs"]["conditioning"][0]["seconds_total"]
    assert audio.shape[1] == round(seconds * pipe.cfg.sample_rate)
    # The audio is the decode of those latents, trimmed. Checked in two steps, each against its
    # own tolerance: generate() hands on exactly our decode of its latents, and our decode of the
    # reference's latents is the reference's audio. (Comparing the audio outright would multiply
    # the latents' rounding by the decoder's gain, ~25x on these random weights.)
    assert torch.equal(audio, pipe.decode(result.latents)[0, :, : audio.shape[1]])
    if f"gen.{name}" in ref:  # audio is kept for one sampler per model (size); the rest via latents
        ours = pipe.decode(ref[f"gen.{name}.latent"])[0, :, : audio.shape[1]]
        assert_close(ours, ref[f"gen.{name}"][0, :, : audio.shape[1]], f"{model} {name} audio")


def test_the_v_sampler_goldens_include_unequal_steps():
    """With rho = 1 every step has the same h, so the multistep ratios (r, r0, r1) are all 1
    and a mistake in them would pass; the golden set must hold rho != 1 for each v sampler."""
    info, _ = golden_data("sao1")
    with_rho = {g["kwargs"]["sampler_type"] for g in info["generations"].values() if g["kwargs"].get("rho", 1) != 1}
    assert with_rho >= set(sampling.V_SAMPLERS)


def test_published_configs_have_the_reference_keys():
    """The module tree built from each published config has exactly the reference's keys and shapes."""
    from sao_live.engine.config import ModelConfig
    from sao_live.engine.model import StableAudioModel

    published = json.loads((GOLDEN / "published_keys.json").read_text())
    for name in ("sao-small", "sao-1.0"):
        entry = published[name]
        cfg = ModelConfig.from_file(_config_path(name))
        with torch.device("meta"):
            model = StableAudioModel(cfg)
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        ref = {k: list(v) for k, v in entry["keys"].items()}
        assert sorted(set(ref) - set(ours)) == [], f"{name}: keys we lack"
        assert sorted(set(ours) - set(ref)) == [], f"{name}: keys the reference lacks"
        assert {k: v for k, v in ours.items() if ref[k] != v} == {}, f"{name}: shapes differ"
        assert sum(torch.Size(s).numel() for s in ours.values()) == entry["total_elements"]


def _config_path(name):
    from pathlib import Path

    import sao_live

    return Path(sao_live.__file__).parent / "configs" / f"{name}.json"


# ------------------------------------------------------------ the tolerances catch mistakes
#
# Each check above, repeated with one deliberate mistake, must fail. The error a mistake makes
# has to clear the tolerance by a wide margin (MARGIN), or a slightly different CPU could hide it.

MARGIN = 5.0


def assert_caught(ours, ref, tolerance=FP32_TOLERANCE):
    err = rel_err(ours, ref)
    assert err > MARGIN * tolerance, f"the mistake gives {err:.2e}, within {MARGIN:g}x the tolerance {tolerance:.1e}"


def swapped_checkpoint(tmp_path, model: str, pick) -> StableAudioPipeline:
    """A real checkpoint file whose two same-shaped tensors chosen by `pick(keys)` are swapped,
    read through the real loader: what a loader that maps keys wrongly would produce."""
    state = load_file(str(GOLDEN / model / "model.safetensors"))
    a, b = pick(sorted(state))
    assert state[a].shape == state[b].shape and not torch.equal(state[a], state[b])
    state[a], state[b] = state[b], state[a]
    save_file(state, str(tmp_path / "model.safetensors"))
    shutil.copyfile(GOLDEN / model / "model_config.json", tmp_path / "model_config.json")
    return load(tmp_path)


def _pair(prefix_a: str, prefix_b: str):
    def pick(keys):
        return next(k for k in keys if k.startswith(prefix_a)), next(k for k in keys if k.startswith(prefix_b))

    return pick


@pytest.mark.parametrize("model", MODELS)
def test_a_swapped_dit_key_fails_the_dit_check(tmp_path, model):
    info, ref = golden_data(model)
    layers = "model.model.transformer.layers"
    pipe = swapped_checkpoint(tmp_path, model, _pair(f"{layers}.0.self_attn.to_out", f"{layers}.1.self_attn.to_out"))
    for name in info["dit"]["calls"]:
        assert_caught(dit_call(pipe, info, ref, name), ref[name])


@pytest.mark.parametrize("model", MODELS)
def test_a_swapped_vae_key_fails_the_vae_check(tmp_path, model):
    _, ref = golden_data(model)
    dec = "pretransform.model.decoder.layers"
    pipe = swapped_checkpoint(tmp_path, model, _pair(f"{dec}.1.layers.0.alpha", f"{dec}.1.layers.0.beta"))
    assert_caught(pipe.decode(ref["vae.latent"]), ref["vae.audio"])


def test_a_swapped_t5_weight_fails_the_fp16_t5_check(golden):
    pipe, info, ref = golden
    prompts, _, _ = _metadata(info["conditioning"]["metadata"])
    attention = pipe.text_encoder.model.encoder.block[0].layer[0].SelfAttention
    q, k = attention.q.weight, attention.k.weight
    saved = q.detach().clone()
    try:
        with torch.no_grad():
            q.copy_(k), k.copy_(saved)
        embeds, _ = pipe.text_encoder(prompts)
    finally:
        with torch.no_grad():
            k.copy_(q), q.copy_(saved)
    assert_caught(embeds, ref["cond.prompt"], fp16_t5_tolerance(pipe))


def test_a_wrong_sign_fails_the_number_conditioner_check(golden_fp32_t5):
    pipe, info, ref = golden_fp32_t5
    _, total, _ = _metadata(info["conditioning"]["metadata"])
    conditioner = pipe.model.conditioner.conditioners["seconds_total"]
    weights = conditioner.embedder.embedding[0].weights
    with torch.no_grad():
        weights.neg_()  # sin(-x) = -sin(x): a sign slip in the Fourier features
    try:
        assert_caught(conditioner(total, pipe.device), ref["cond.seconds_total"])
    finally:
        with torch.no_grad():
            weights.neg_()


# One generation per sampler (the rho != 1 ones for the v samplers, where every ratio counts).
SAMPLER_GENERATIONS = [
    ("small", "pingpong"),
    ("small", "euler"),
    ("small", "dpmpp"),
    ("sao1", "dpmpp-3m-sde-rho"),
    ("sao1", "dpmpp-2m-sde-rho"),
    ("sao1", "dpmpp-2m-rho"),
]


@pytest.mark.parametrize("model, name", SAMPLER_GENERATIONS)
def test_a_wrong_sigma_fails_the_generation_check(pipes_fp32_t5, model, name):
    """One interior sigma of the schedule off by 1%: a plausible slip in a schedule formula."""
    info, ref = golden_data(model)
    sigmas = ref[f"gen.{name}.sigmas"].clone()
    sigmas[len(sigmas) // 2] *= 1.01
    checked: list[float] = []
    with on_the_reference_schedule(sigmas, checked):
        result = generate_like_golden(pipes_fp32_t5[model], info["generations"][name], ref)
    assert checked[0] > MARGIN * SCHEDULE_TOLERANCE  # the schedule check sees it
    assert_caught(result.latents, ref[f"gen.{name}.latent"])  # and so does the generation check

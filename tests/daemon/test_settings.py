"""Settings: defaults, then TOML, then flags; bad values and unknown keys are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sao_live.daemon.settings import Settings, SettingsError


def test_toml_then_flags(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('osc_port = 9000\nreply_port = 9001\nexport_dir = "~/daw"\nbpm = 128\n')
    s = Settings.load(config, osc_port=9100, reply_port=None)
    assert (s.osc_port, s.reply_port, s.bpm) == (9100, 9001, 128)  # the flag wins, an unset flag does not
    assert s.export_dir == Path("~/daw").expanduser()
    assert s.host == "127.0.0.1" and s.model == "model"


def test_user_config_file_is_read_when_present(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert Settings.load().osc_port == 9321
    (tmp_path / "sao-live").mkdir()
    (tmp_path / "sao-live" / "config.toml").write_text("osc_port = 9555\n")
    assert Settings.load().osc_port == 9555


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("osc_prot = 1\n", "unknown settings ['osc_prot']"),
        ("osc_port = 70000\n", "osc_port must be a port number in [1, 65535], got 70000"),
        ("queue_size = 0\n", "queue_size must be at least 1"),
        ("requesters_per_job = 0\n", "requesters_per_job must be at least 1"),
        ('export_format = "mp3"\n', "export_format must be one of wav, wav16, wav32f, flac, got 'mp3'"),
        ("shutdown_timeout = -1\n", "shutdown_timeout must be a positive number"),
        ("osc_port = \n", "cannot read config file"),
        ('pool = "spark://head:7077"\n', "pool must be ray or ray://HOST:PORT (e.g. ray://10.0.0.5:10001), got 'spark"),
        ('pool = "ray://head"\n', "pool must be ray or ray://HOST:PORT"),
        ("pool_cpus_per_actor = -1\n", "pool_cpus_per_actor must be a whole number >= 0, got -1"),
    ],
)
def test_bad_settings_are_named(tmp_path, text, phrase):
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(SettingsError) as err:
        Settings.load(config)
    assert phrase in str(err.value)


def test_a_pool_is_off_ray_or_a_ray_client_address():
    assert Settings().pool == "" and Settings(pool="ray").pool == "ray"
    assert Settings(pool="ray://10.0.0.5:10001").pool == "ray://10.0.0.5:10001"
    assert "pool = off" in Settings().describe() and "pool_model = as model" in Settings().describe()


def test_missing_config_file_given_on_the_command_line(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")


def test_describe_lists_every_setting_with_the_value_in_effect(tmp_path):
    from dataclasses import fields

    text = Settings().describe()
    assert "osc_port = 9321" in text and "reply_port = 9322" in text
    assert "export_dir = none (clips stay in the cache)" in text and "export = off (no --export-dir)" in text
    assert "int8 = auto (on for CPU in fast mode)" in text and "None" not in text
    assert [line.split(" = ")[0].strip() for line in text.splitlines()] == [f.name for f in fields(Settings)]
    text = Settings(export_dir=tmp_path, int8=False, model=str(tmp_path)).describe()
    assert "export = on" in text and "int8 = False" in text and f"export_dir = {tmp_path}" in text


def test_every_setting_is_documented():
    from dataclasses import fields

    doc = (Path(__file__).resolve().parents[2] / "docs" / "daemon.md").read_text()
    missing = [f.name for f in fields(Settings) if f"| `{f.name}` |" not in doc]
    assert missing == []


@pytest.mark.parametrize(("text", "phrase"), [("export = 1\n", "export must be true or false"),
                                              ('model = ""\n', "model must be a non-empty string"),
                                              ('int8 = "yes"\n', "int8 must be true or false"),
                                              ('arithmetic = "dit=int4"\n', "dit=int8,decoder=fp32"),
                                              ("arithmetic = 8\n", "arithmetic must be a string"),
                                              ('int8 = true\narithmetic = "dit=bf16"\n', "contradict"),
                                              ("audio_nice = -30\n", "audio_nice must be a whole number")])  # fmt: skip
def test_setting_types(tmp_path, text, phrase):
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=phrase):
        Settings.load(config)


def test_live_params_check_values_like_requests():
    from sao_live.daemon.settings import LiveParams
    from sao_live.live.tempo import Tempo
    from sao_live.request import ModelInfo, RequestError

    model = ModelInfo("tiny", "fp", 2.97, 44100, "rf", 8, 1.0, "pingpong", ("pingpong", "euler"))
    tempo = Tempo(120.0)
    params = LiveParams(Settings(), tempo)
    params.set("bpm", 90, model)  # bpm lives in the one Tempo
    assert tempo.bpm == 90.0 and params.get("bpm", model) == 90.0
    assert params.get("steps", model) == 8 and params.get("export", model) == 1
    params.set("steps", 4.0, model)
    params.set("sampler", "euler", model)
    params.set("export", 0, model)
    assert (params.get("steps", model), params.get("sampler", model), params.get("export", model)) == (4, "euler", 0)
    for name, value, phrase in [("bpm", 5000, r"bpm must be in \[20, 400\]"), ("steps", 0, "steps must be in"),
                                ("sampler", "dpmpp-3m-sde", "sampler must be one of pingpong, euler"),
                                ("export_format", "mp3", "export_format must be one of")]:  # fmt: skip
        with pytest.raises(RequestError, match=phrase) as err:
            params.set(name, value, model)
        assert err.value.code == "bad_value"
    with pytest.raises(RequestError, match="no setting 'volume'") as err:
        params.get("volume", model)
    assert err.value.code == "unknown_param"


def test_arithmetic_flags_reach_the_worker_and_the_cache_key(tmp_path, tiny_t5):
    """`--int8`, `--no-int8` and `--arithmetic` are not only parsed: daemons sharing one cache give
    the same request and seed other audio, each generated anew (the arithmetic is in the clip key)."""
    import soundfile as sf

    from sao_live.testing.daemon import DaemonProcess

    audio, paths = {}, {}
    for flag in (("--int8",), ("--no-int8",), ("--arithmetic", "dit=bf16")):
        daemon = DaemonProcess(tmp_path, tiny_t5, args=flag).start()  # one root: one cache
        client = daemon.client()
        try:
            kind, args = client.request("/sao/gen", "q", "kick drum", 0.5, "seed", 3, "steps", 2)
        finally:
            client.close()
            daemon.stop()
        assert kind == "/sao/done", args
        paths[flag[-1]] = args[1]
        audio[flag[-1]] = sf.read(args[1], dtype="float32")[0]
    assert len(set(paths.values())) == 3, paths
    a, b, c = audio["--int8"], audio["--no-int8"], audio["dit=bf16"]
    assert a.shape == b.shape == c.shape and all(np.isfinite(x).all() for x in (a, b, c))
    # int8 weights move the audio (the random tiny model amplifies a few percent per DiT call to
    # about 0.3 here) but keep it the same sound: two unrelated clips differ by about sqrt(2).
    rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
    assert 0.01 < rel < 1.0, rel
    rel = float(np.linalg.norm(c - b) / np.linalg.norm(b))  # bf16 products: less than int8 moves it
    assert 0 < rel < 1.0, rel

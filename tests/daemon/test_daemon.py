"""`sao-live serve` over real UDP with a python-osc client: the protocol, the cache, the queue, export."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest
import soundfile as sf
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from sao_live.daemon import protocol
from sao_live.testing.daemon import Collector, DaemonProcess, build, free_port

from .daemon_helpers import LONG_STEPS, SHORT_LONG_STEPS, riff_chunks

RATE = 44100


def unique(prompt: str) -> str:
    """A prompt no other test asks for, so its clip is not in the cache yet."""
    return f"{prompt} {uuid.uuid4().hex[:8]}"


def test_ping_echoes_its_atoms(client):
    client.send("/sao/ping", "x", 3, 1.5)
    assert client.wait_for("/sao/pong") == ("x", 3, 1.5)


def test_gen_queues_reports_progress_and_answers_done(client, shared_daemon):
    prompt = unique("kick drum")
    kind, args = client.request("/sao/gen", "g1", prompt, 1.5, "seed", 11, "steps", 4)
    assert kind == "/sao/done", args
    _, path, seconds, seed, cached = args
    assert (seconds, seed, cached) == (1.5, 11, 0)
    assert client.of("/sao/queued", "g1") == [("g1", 0)]
    steps = [a[1] for a in client.of("/sao/progress", "g1")]
    assert steps == [0.25, 0.5, 0.75, 1.0]
    assert path.startswith(str(shared_daemon.export_dir)) and path.endswith("_1.5s_s11.wav")
    info = sf.info(path)
    assert (info.subtype, info.frames, info.samplerate) == ("PCM_24", round(1.5 * RATE), RATE)
    assert json.loads(sf.SoundFile(path).comment)["sao_live"]["prompt"] == prompt


def test_the_same_request_again_is_answered_from_the_cache(client):
    prompt = unique("snare")
    first = client.request("/sao/gen", "c1", prompt, 0.5, "seed", 5, "steps", 2, "export", 0)[1]
    t0 = time.perf_counter()
    again = client.request("/sao/gen", "c2", prompt, 0.5, "seed", 5, "steps", 2, "export", 0)[1]
    elapsed = time.perf_counter() - t0
    assert again[1:] == (first[1], 0.5, 5, 1)
    assert client.of("/sao/queued", "c2") == [] and client.of("/sao/progress", "c2") == []
    assert elapsed < 1.0
    info = sf.info(first[1])  # the cache keeps what the model made: 32-bit float
    assert info.subtype == "FLOAT" and "/cache/clips/" in first[1]


def test_seedless_trigger_plays_any_cached_clip_and_gen_makes_new_ones(client):
    prompt = unique("hat")
    kind, made = client.request("/sao/trigger", "t1", prompt, 0.5, "steps", 2, "export", 0)
    assert kind == "/sao/done" and made[4] == 0 and 0 <= made[3] < 2**24
    kind, played = client.request("/sao/trigger", "t2", prompt, 0.5, "steps", 2, "export", 0)
    assert played[1:] == made[1:4] + (1,)  # the same clip, from the cache
    new = client.request("/sao/gen", "t3", prompt, 0.5, "steps", 2, "export", 0)[1]
    assert new[4] == 0 and new[3] != made[3]  # gen without a seed: a new variation


def test_seedless_triggers_in_flight_share_one_clip(client):
    prompt = unique("shared")
    for id in ("s1", "s2", "s3"):
        client.send("/sao/trigger", id, prompt, 0.5, "steps", 2, "export", 0)
    answers = [client.wait_reply(id)[1] for id in ("s1", "s2", "s3")]
    assert len({(a[1], a[3]) for a in answers}) == 1, answers


def test_split_prompt_and_mixed_number_types_make_the_same_clip(client):
    words = unique("warm arpeggios").split()
    split = client.request("/sao/gen", 7, *words, 1, "seed", 5.0, "steps", 2.0, "export", 0)[1]
    whole = client.request("/sao/gen", 8.0, " ".join(words), 1.0, "seed", 5, "steps", 2, "export", 0)[1]
    assert split[0] == 7 and whole[0] == 8  # a whole float id comes back as an int
    assert whole[1] == split[1] and whole[4] == 1


def test_variations_use_consecutive_seeds(client):
    client.send("/sao/gen", "v", unique("clap"), 0.25, "seed", 100, "steps", 2, "variations", 3, "export", 0)
    seeds = sorted(client.wait_reply("v")[1][3] for _ in range(3))
    assert seeds == [100, 101, 102]


def test_touchosc_press_generates_and_release_is_ignored(client):
    prompt = unique("pad")
    kind, args = client.request("/sao/trigger", "press", prompt, 0.25, "seed", 1, "steps", 2, "export", 0, 1.0)
    assert kind == "/sao/done"
    client.send("/sao/trigger", "release", prompt, 0.25, "seed", 1, "steps", 2, "export", 0, 0.0)
    client.send("/sao/ping", "after")
    client.wait_for("/sao/pong")  # handled in order: the release came first
    assert client.of("/sao/done", "release") == [] and client.of("/sao/error", "release") == []


def test_bundle_with_a_future_timetag_is_handled_at_once(client):
    bundle = OscBundleBuilder(time.time() + 3600)
    for text in ("a", "b"):
        msg = OscMessageBuilder("/sao/ping")
        msg.add_arg(text)
        bundle.add_content(msg.build())
    t0 = time.perf_counter()
    client.send_raw(bundle.build().dgram)
    assert client.wait_for("/sao/pong", timeout=5) == ("a",)
    assert client.wait_for("/sao/pong", timeout=5) == ("b",)
    assert time.perf_counter() - t0 < 2


def test_identical_requests_are_generated_once_and_all_answered(shared_daemon):
    clients = [shared_daemon.client() for _ in range(3)]
    prompt = unique("merged")
    for i, c in enumerate(clients):
        c.send("/sao/gen", f"m{i}", prompt, 1.0, "seed", 3, "steps", SHORT_LONG_STEPS, "export", 0)
    answers = [c.wait_reply(f"m{i}")[1] for i, c in enumerate(clients)]
    assert len({a[1] for a in answers}) == 1
    assert sorted(a[4] for a in answers) in ([0, 0, 0], [0, 0, 1])  # joined the job, or came after it
    assert shared_daemon.log().count(repr(prompt[:60])) == 1  # one job line: one generation
    for c in clients:
        c.close()


def test_priorities_order_the_queue(client):
    tag = uuid.uuid4().hex[:6]
    client.send("/sao/gen", "busy", unique("long"), 2.9, "steps", LONG_STEPS, "export", 0)
    client.wait_for("/sao/progress", lambda a: a[0] == "busy")
    for id, priority in (("refill", "refill"), ("pre", "prerender"), ("now", "now")):
        client.send("/sao/gen", id, f"{id} {tag}", 0.25, "steps", 2, "priority", priority, "export", 0)
    positions = {id: client.wait_for("/sao/queued", lambda a, i=id: a[0] == i)[1] for id in ("refill", "pre", "now")}
    assert positions == {"refill": 1, "pre": 1, "now": 1}  # each went ahead of the ones before it
    client.send("/sao/cancel", "busy")
    for id in ("now", "pre", "refill"):
        client.wait_reply(id)
    done = [a[0] for addr, a in client.messages if addr == "/sao/done"]
    assert done == ["now", "pre", "refill"]


def test_cancel_running_and_queued(client):
    long_prompt = unique("long cancel")
    long_args = (long_prompt, 2.9, "seed", 1, "steps", LONG_STEPS, "export", 0)
    client.send("/sao/gen", "L", *long_args)
    client.wait_for("/sao/progress", lambda a: a[0] == "L")
    client.send("/sao/gen", "Q", unique("queued"), 0.5, "steps", 2, "export", 0)
    client.wait_for("/sao/queued", lambda a: a[0] == "Q")
    client.send("/sao/cancel", "Q")
    assert client.wait_for("/sao/cancelled", lambda a: a[0] == "Q") == ("Q", 1)
    assert client.wait_reply("Q")[1][1] == "cancelled"
    client.send("/sao/cancel", "L")
    assert client.wait_reply("L")[1][1] == "cancelled"
    # The worker stopped: the clip was never made, so asking again queues it anew.
    client.send("/sao/gen", "L2", *long_args)
    assert client.wait_for("/sao/queued", lambda a: a[0] == "L2")
    client.send("/sao/cancel", "all")
    assert client.wait_reply("L2")[1][1] == "cancelled"
    client.send("/sao/cancel", "nobody")
    assert client.wait_reply("nobody")[1][1] == "unknown_id"


def test_status_and_info(shared_daemon, client):
    assert client.request("/sao/gen", "s", unique("status"), 0.25, "steps", 2, "export", 0)[0] == "/sao/done"
    client.send("/sao/status")
    status = client.wait_for("/sao/status")
    assert len(status) == 14  # the pool's atoms come only with --pool
    ready, queued, running, clips, cache_mb, pid, audio, *_ = status
    assert audio == 0  # audio_device = "none": the daemon runs export-only and says so
    assert ready == 1 and queued == 0 and running in (0, 1)  # the test before cancelled everything
    assert pid in shared_daemon.children() and pid != shared_daemon.proc.pid  # the worker's
    # The clip count and size are the store's, read here from its index on disk.
    index = sqlite3.connect(f"file:{shared_daemon.cache_dir / 'index.sqlite3'}?mode=ro", uri=True)
    try:
        count, size = index.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM clips").fetchone()
    finally:
        index.close()
    assert count > 0 and clips == count
    assert cache_mb == pytest.approx(round(size / 2**20, 3), rel=1e-6)  # MB, rounded, sent as a float32
    client.send("/sao/info")
    version, count, page, pages = client.wait_for("/sao/info/end")
    assert (version, count, page) == (protocol.VERSION, len(protocol.PROTOCOL), 0) and pages == -(-count // 4)
    for page in range(1, pages):
        client.send("/sao/info", page)
        assert client.wait_for("/sao/info/end")[2:] == (page, pages)
    rows = client.of("/sao/info")  # every page's rows, in order: the whole table once
    assert rows == [(r.address, r.arguments, r.replies, r.errors) for r in protocol.PROTOCOL]
    client.send("/sao/info", pages)
    assert client.wait_reply("")[1][1] == "bad_args"
    client.send("/sao/pool")  # without --pool: no actor, the local worker serves
    assert client.wait_for("/sao/pool") == ("local", 0, 0) and not client.of("/sao/pool/actor")


def test_set_and_get(client):
    client.send("/sao/set/bpm", 100)
    assert client.wait_for("/sao/value") == ("bpm", 100.0)
    try:
        kind, args = client.request("/sao/gen", "bars", unique("loop"), 0, "bars", 1, "steps", 2, "export", 0)
        assert kind == "/sao/done" and math.isclose(args[2], 2.4, abs_tol=1e-6)  # 1 bar at 100 bpm
    finally:
        client.send("/sao/set/bpm", 120.0)
        client.wait_for("/sao/value")
    client.send("/sao/get/steps")
    assert client.wait_for("/sao/value") == ("steps", 8)  # the model card's default
    client.send("/sao/get/export_format")
    assert client.wait_for("/sao/value") == ("export_format", "wav")


def test_hello_moves_replies_to_another_port(shared_daemon):
    sender = shared_daemon.client(hello=False)
    elsewhere = Collector()
    try:
        sender.send("/sao/hello", elsewhere.port)
        assert elsewhere.wait_for("/sao/ready", timeout=5) == (1, "tiny-random")
        sender.send("/sao/ping", "here?")
        assert elsewhere.wait_for("/sao/pong", timeout=5) == ("here?",)
        assert sender.of("/sao/pong") == []
    finally:  # give the host's default back to the reply port for the tests that rely on it
        sender.send("/sao/hello", shared_daemon.reply_port)
        sender.close()
        elsewhere.close()


def test_export_formats_and_loops(client, shared_daemon):
    prompt = unique("Deep Techno")
    results = {}
    for fmt in ("flac", "wav32f", "wav16"):
        kind, args = client.request("/sao/gen", fmt, prompt, 1.0, "seed", 4, "steps", 2, "export", fmt)
        assert kind == "/sao/done", args
        results[fmt] = sf.info(args[1])
    assert (results["flac"].format, results["flac"].subtype) == ("FLAC", "PCM_24")
    assert results["wav32f"].subtype == "FLOAT" and results["wav16"].subtype == "PCM_16"
    kind, args = client.request("/sao/gen", "loop", prompt, 0, "bars", 1, "bpm", 128, "seed", 4, "steps", 2)
    path = shared_daemon.export_dir / f"deep-techno-{prompt.split()[-1]}_128bpm_1bar_s4.wav"
    assert args[1] == str(path)
    tempo = riff_chunks(path)[b"acid"][-4:]
    assert tempo == b"\x00\x00\x00C"  # 128.0 as little-endian float32
    assert sf.info(path).frames == round(240 / 128 * RATE)
    again = client.request("/sao/gen", "loop2", prompt, 0, "bars", 1, "bpm", 128, "seed", 4, "steps", 2)[1]
    assert again[1] == str(path) and again[4] == 1  # exported once, not a second copy


def test_export_never_overwrites_a_file_the_daw_holds(client, shared_daemon):
    prompt = unique("Held")
    name = f"held-{prompt.split()[-1]}_0.5s_s9.wav"
    held = shared_daemon.export_dir / name
    held.write_bytes(b"in use")
    args = client.request("/sao/gen", "held", prompt, 0.5, "seed", 9, "steps", 2)[1]
    assert args[1] == str(held.with_name(name.replace(".wav", "_2.wav")))
    assert held.read_bytes() == b"in use"


def test_damaged_clip_is_made_again(client):
    prompt = unique("damaged")
    request = (prompt, 0.5, "seed", 2, "steps", 2, "export", 0)
    path = client.request("/sao/gen", "d1", *request)[1][1]
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    again = client.request("/sao/gen", "d2", *request)[1]
    assert again[1] == path and again[4] == 0  # regenerated, not served half
    assert os.path.getsize(path) == size


LONG_PROMPT = "x" * 60000


@pytest.mark.parametrize(
    ("message", "code", "id"),
    [
        (b"hello world!", "bad_osc", ""),
        (b"\x00\x01\x02", "bad_osc", ""),
        (build("/sao/gen", "e", "kick", 1.0)[:-4], "bad_osc", ""),
        (("/sao/gen",), "bad_args", ""),
        (("/sao/gen", "e"), "missing_prompt", "e"),
        (("/sao/gen", "e", "kick"), "missing_seconds", "e"),
        (("/sao/gen", "e", "", 1.0), "empty_prompt", "e"),
        (("/sao/gen", "e", 2.0), "missing_prompt", "e"),
        (("/sao/gen", "e", "kick", float("nan")), "bad_seconds", "e"),
        (("/sao/gen", "e", "kick", float("inf")), "bad_seconds", "e"),
        (("/sao/gen", "e", "kick", -1.0), "bad_seconds", "e"),
        (("/sao/gen", "e", "kick", 99.0), "bad_seconds", "e"),
        (("/sao/gen", "e", "kick", 1.0, "bars", 16, "bpm", 60), "bad_seconds", "e"),
        (("/sao/gen", "e", LONG_PROMPT, 1.0), "prompt_too_long", "e"),
        (("/sao/gen", "e", "kick", 1.0, "steps", 0), "bad_steps", "e"),
        (("/sao/gen", "e", "kick", 1.0, "steps", 10**9), "bad_steps", "e"),
        (("/sao/gen", "e", "kick", 1.0, "cfg", 1e6), "bad_cfg", "e"),
        (("/sao/gen", "e", "kick", 1.0, "seed", 2**40), "bad_seed", "e"),
        (("/sao/gen", "e", "kick", 1.0, "sampler", "nope"), "bad_sampler", "e"),
        (("/sao/gen", "e", "kick", 1.0, "bogus", 3), "unknown_key", "e"),
        (("/sao/gen", "e", "kick", 1.0, "seed"), "missing_value", "e"),
        (("/sao/trigger", "e", "kick", 1.0, "variations", 100), "bad_variations", "e"),
        (("/sao/gen", b"blob", "kick", 1.0), "bad_id", ""),
        (("/sao/gen", 1.5, "kick", 1.0), "bad_id", ""),
        (("/sao/nope",), "unknown_address", ""),
        (("/sao/set/volume", 3), "unknown_param", ""),
        (("/sao/set/bpm", 5000), "bad_value", ""),
        (("/sao/get/nope",), "unknown_param", ""),
        (("/sao/hello", 70000), "bad_port", ""),
        (("/sao/cancel",), "bad_args", ""),
    ],
)
def test_bad_input_gets_a_coded_error(client, message, code, id):
    if isinstance(message, bytes):
        client.send_raw(message)
    else:
        client.send(*message)
    kind, args = client.wait_reply(id, timeout=10)
    assert (kind, args[1]) == ("/sao/error", code), args
    assert len(args[2]) > 10  # a sentence, not just a code


@pytest.mark.parametrize("seconds", [-1.0, 0.0, 100.0])
def test_every_bad_length_names_the_models_window(client, seconds):
    client.send("/sao/gen", "len", "kick", seconds)
    kind, args = client.wait_reply("len", timeout=10)
    assert (kind, args[1]) == ("/sao/error", "bad_seconds"), args
    assert args[2] == f"seconds must be in (0, 11.89] for tiny-random, got {seconds:g}"


@pytest.mark.parametrize("seed", [-5, 2**31, 2**40])
def test_seeds_outside_the_one_range_are_refused_with_the_range_as_integers(client, seed):
    client.send("/sao/gen", "sd", "kick", 1.0, "seed", seed)
    kind, args = client.wait_reply("sd", timeout=10)
    assert (kind, args[1]) == ("/sao/error", "bad_seed"), args
    assert args[2] == f"seed must be in [0, 2147483647] or -1 (random), got {seed}"


def _says_it_once(message: str) -> bool:
    words = message.replace(",", " ").replace(";", " ").split()
    triples = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return len(triples) == len(set(triples))


def test_no_audio_says_why_once(client, tmp_path, tiny_t5):
    client.send("/sao/play", "nothing-here")
    kind, args = client.wait_reply("nothing-here", timeout=10)
    assert (kind, args[1], args[2]) == (
        "/sao/error",
        "no_audio",
        "nothing can play: disabled (audio_device = none), export only",
    )
    config = dict(audio_device="no-such-device-anywhere", midi_in="none")  # the device fails to open
    daemon = DaemonProcess(tmp_path / "d", tiny_t5, config=config, export=False).start()
    c = daemon.client()
    try:
        c.send("/sao/play", "nothing-here")
        kind, args = c.wait_reply("nothing-here", timeout=10)
    finally:
        c.close()
        assert daemon.stop() == 0, daemon.log()
    assert (kind, args[1]) == ("/sao/error", "no_audio"), args
    message = args[2]
    assert message.startswith("nothing can play: ") and message.endswith("; export only"), message
    assert _says_it_once(message), message
    assert f"audio: {message.removeprefix('nothing can play: ')}" in daemon.log()  # the log gives the same reason


def test_bad_input_leaves_running_work_alone(client, shared_daemon):
    client.send("/sao/gen", "work", unique("steady"), 2.0, "steps", SHORT_LONG_STEPS, "export", 0)
    client.wait_for("/sao/progress", lambda a: a[0] == "work")
    for junk in (b"garbage!", build("/sao/gen", "x", "", 1.0), build("/sao/cancel", 3.5), build("/sao/gen", 1)):
        client.send_raw(junk)
    kind, args = client.wait_reply("work", timeout=60)
    assert kind == "/sao/done" and args[4] == 0
    errors = client.of("/sao/error")
    assert len(errors) == 4 and {e[1] for e in errors} == {"bad_osc", "empty_prompt", "bad_id", "missing_prompt"}
    assert "Traceback" not in shared_daemon.log()


def _send_cli(port: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sao_live.cli", "send", "--port", str(port), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_send_command_prints_replies_and_exits_by_outcome(shared_daemon):
    prompt = unique("cli kick")
    done = _send_cli(shared_daemon.osc_port, "--wait", "/sao/gen", "cli1", prompt, "0.5", "seed", "6", "steps", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "/sao/queued cli1 0" and lines[-1].startswith("/sao/done cli1 ")
    assert lines[-1].endswith(" 0.5 6 0") and len([x for x in lines if x.startswith("/sao/progress")]) == 2
    bad = _send_cli(shared_daemon.osc_port, "--wait", "-t", "ssf", "/sao/gen", "cli2", "kick", "nan")
    assert bad.returncode == 1 and bad.stdout.startswith("/sao/error cli2 bad_seconds")
    quiet = _send_cli(free_port(), "--wait", "--timeout", "1", "/sao/ping")
    assert quiet.returncode == 3 and "no answer" in quiet.stderr
    assert _send_cli(shared_daemon.osc_port, "/sao/ping").returncode == 0  # fire and forget

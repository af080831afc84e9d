"""What the Max patches send and show, run through maxsim (Max cannot run here; maxsim evaluates the
patch's boxes and cords the way Max does). Every message is checked against the PROTOCOL table's
argument order and by the daemon's own parsers; every reply is built from the table's reply columns."""

from __future__ import annotations

import pytest

from . import addresses as a
from . import maxsim
from . import oscforms as forms

DEVICE = a.MAX_DEVICE
PATCHES = {"sao-live.maxpat": a.MAX_PATCH, "sao-live-device.maxpat": DEVICE}
# Live's object model as the device sees it: path -> the object there (its id and properties)
LIVE = {
    "live_set": {"id": 1, "tempo": 120.0},
    "live_set view highlighted_clip_slot": {"id": 5, "has_clip": 0},
    "live_set view selected_track": {"id": 3, "has_audio_input": 1},
}


def make(path, live=LIVE):
    sim = maxsim.Sim(maxsim.patcher_of(path), {k: dict(v) for k, v in live.items()})
    sim.load()
    return sim


@pytest.fixture(params=sorted(PATCHES))
def sim(request):
    return make(PATCHES[request.param])


def _tempo(sim, bpm):
    """The tempo the patch sends with bars: Live's (observed in the device), or the bpm box's."""
    if sim.all("live.observer"):
        sim.observe("tempo", bpm)
    else:
        sim.set("bpm", bpm)


def _click(sim, name):
    sim.sent.clear()
    sim.click(name)
    return list(sim.sent)


def _only(sent, address):
    assert [m[0] for m in sent] == [address], sent
    return forms.check(*sent[0])


def _prompt(bound) -> str:
    return " ".join(bound["prompt"])


@pytest.mark.parametrize("address", ["/sao/gen", "/sao/trigger"])
def test_a_request_carries_prompt_seconds_and_seed_where_the_protocol_puts_them(sim, address):
    sim.type("prompt", "dusty tape loop")
    sim.set("seconds", 6.5)
    sim.set("seed", 42)
    bound = _only(_click(sim, address.rsplit("/", 1)[1]), address)
    assert isinstance(bound["id"], int)
    assert bound == {"id": bound["id"], "prompt": ["dusty tape loop"], "seconds": 6.5, "seed": 42}


def test_a_loop_request_carries_bars_and_bpm(sim):
    sim.type("prompt", "dusty tape loop")
    sim.set("seed", 42)
    sim.set("bars", 2)
    _tempo(sim, 100.0)
    bound = _only(_click(sim, "gen"), "/sao/gen")
    assert {k: bound[k] for k in ("bars", "bpm", "seed")} == {"bars": 2, "bpm": 100.0, "seed": 42}
    assert _prompt(bound) == "dusty tape loop" and bound["seconds"] == 0  # bars set the length


def test_the_defaults_make_a_request_the_daemon_accepts_and_the_boxes_show_them(sim):
    bound = _only(_click(sim, "gen"), "/sao/gen")  # check(): the daemon's parser accepts it
    assert bound["seconds"] > 0
    assert (sim.shown("seconds"), sim.shown("seed")) == (bound["seconds"], bound["seed"])
    assert _prompt(bound) == sim.shown("prompt")


@pytest.mark.parametrize("seconds", [-5, 0, 0.05, 1e9])
def test_every_seconds_the_box_allows_is_accepted(sim, seconds):
    sim.set("seconds", seconds)  # the box clamps to its range
    bound = _only(_click(sim, "gen"), "/sao/gen")
    assert bound["seconds"] == sim.shown("seconds") > 0


def test_the_request_id_increments_and_play_plays_the_last_one(sim):
    ids = [_only(_click(sim, name), f"/sao/{name}")["id"] for name in ("gen", "gen", "trigger")]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2], ids
    assert _only(_click(sim, "play"), "/sao/play") == {"id": ids[-1]}


def test_stop_and_cancel_address_every_voice_and_request(sim):
    assert _only(_click(sim, "stop"), "/sao/stop") == {"all": True}
    assert _only(_click(sim, "cancel"), "/sao/cancel") == {"all": True}


def test_a_pad_is_hit_by_number():
    sim = make(a.MAX_PATCH)  # the device leaves pads to sao-live-pads.amxd
    sim.sent.clear()
    sim.set("pad", 3)
    bound = _only(sim.sent, "/sao/pad/3")
    assert bound.get("velocity", 1) > 0  # a press, not a release


def test_opening_says_hello_on_the_port_it_listens_on(sim):
    hello = [forms.check(*m) for m in sim.sent if m[0] == "/sao/hello"]
    ports = [b.args[0] for b in sim.all("udpreceive")]
    assert hello == [{"reply_port": ports[0]}] and len(ports) == 1


def test_progress_reaches_the_progress_bar(sim):
    args, by_name = forms.sample_reply("/sao/progress")
    sim.receive("/sao/progress", *args)
    assert sim.shown("progress") == by_name["0..1"]


def test_done_shows_the_path_and_loads_it_into_the_buffer_the_waveform_draws(sim):
    args, by_name = forms.sample_reply("/sao/done")
    sim.receive("/sao/done", *args)
    assert sim.shown("clip") == [by_name["path"]]
    buffers = {b.args[0]: b.state.get("file") for b in sim.all("buffer~")}
    assert buffers == {sim.find("waveform").raw["buffername"]: by_name["path"]}
    assert _only(_click(sim, "play"), "/sao/play") == {"id": by_name["id"]}  # play: the clip just done


def test_an_error_is_shown(sim):
    args, by_name = forms.sample_reply("/sao/error")
    sim.receive("/sao/error", *args)
    shown = " ".join(map(str, sim.shown("error")))
    assert by_name["code"] in shown and by_name["message"] in shown


@pytest.mark.parametrize("first_sound", [4.1, -1.0])  # -1: the clip was not played while it decoded
def test_timing_shows_each_figure_after_its_label(sim, first_sound):
    args, by_name = forms.sample_reply("/sao/timing", first_sound=first_sound)
    sim.receive("/sao/done", *forms.sample_reply("/sao/done")[0])
    sim.receive("/sao/timing", *args)  # right after its /sao/done
    [line] = sim.shown("timing")
    assert forms.timing_shown(line) == pytest.approx(forms.timing_expected(by_name), abs=0.006), line
    assert sim.shown("error") in (None, [])  # timing is no error


def test_an_interruption_is_shown_where_errors_are(sim):
    args, by_name = forms.sample_reply("/sao/interrupted")
    sim.receive("/sao/interrupted", *args)
    assert sim.shown("error") == ["interrupted", by_name["id"], by_name["reason"]]
    assert sim.shown("timing") in (None, [])


def test_every_message_any_control_sends_fits_the_protocol(sim):
    # every clickable box and every number box at its extremes: each message must be one the daemon takes
    sent = list(sim.sent)
    _tempo(sim, 20.0)
    _tempo(sim, 400.0)
    for box in sim.boxes.values():
        sim.sent.clear()
        if box.cls in ("button", "live.button", "live.text", "toggle"):
            sim.click(box.raw["varname"]) if box.cls == "live.text" else sim.send_to(box, 0, maxsim.BANG)
        elif box.cls in ("number", "flonum", "live.numbox"):
            for value in (-1e12, 0, 1, 1e12):
                sim.send_to(box, 0, [value])
                if box.raw.get("varname") in ("seconds", "seed", "bars", "bpm"):
                    sim.click("gen")
        sent += sim.sent
    assert {m[0] for m in sent} >= {"/sao/gen", "/sao/trigger", "/sao/play", "/sao/stop", "/sao/cancel"}
    for address, args in sent:
        forms.check(address, args)


def test_every_reply_routed_is_one_the_daemon_sends(sim):
    routed = {w for b in sim.all("route") for w in b.args if isinstance(w, str) and w.startswith("/sao/")}
    assert {"/sao/done", "/sao/progress", "/sao/error", "/sao/timing", "/sao/interrupted"} <= routed
    for address in routed:
        forms.reply(address)  # raises when no reply of the table has that address

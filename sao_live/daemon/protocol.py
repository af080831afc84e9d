"""OSC protocol v1: the one table that `docs/osc.md` shows and `/sao/info` serves.

Edit the rows here, then run `python -m sao_live.daemon.protocol docs/osc.md` to rewrite
the generated part of the page; a test fails while the two differ.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..musical_time import QUANTIZE_UNITS, TEMPO_SOURCES
from ..ranges import RANGES

VERSION = 1


_GRIDS = [q for q in QUANTIZE_UNITS if QUANTIZE_UNITS[q]]  # beat, bar


def _span(name: str, sep: str = ", ") -> str:
    lo, hi = RANGES[name]
    return f"{lo:g}{sep}{hi:g}"


@dataclass(frozen=True)
class Row:
    address: str
    arguments: str
    replies: str
    errors: str
    meaning: str


_REQ = (
    "`<id> <prompt...> <seconds> [key value ...] [1|0]`; keys: seed, steps, cfg, negative, sampler, "
    "bpm, bars, variations, priority (now, prerender, refill), export (0, 1, wav, wav16, wav32f, flac)"
)
_REQ_ERRORS = (
    "missing_prompt, empty_prompt, prompt_too_long, missing_seconds, bad_seconds, bad_seed, bad_steps, bad_cfg, "
    "bad_sampler, bad_negative, bad_bpm, bad_bars, bad_variations, bad_priority, bad_export, no_export_dir, "
    "unknown_key, missing_value, bad_args, bad_id, busy, not_ready, shutting_down, worker_crashed, "
    "worker_unavailable, generation_failed, cache_failed, export_failed, cancelled, shutdown, internal"
)

PROTOCOL: tuple[Row, ...] = (
    Row(
        "/sao/gen",
        _REQ,
        "`/sao/queued <id> <position>`, `/sao/progress <id> <0..1>` per step, "
        "`/sao/done <id> <path> <seconds> <seed> <cached 0|1>` per variation (with a model pool one more atom: "
        'where the clip was made, `local` or the actor\'s name, "" when cached); after a clip generated now, '
        "`/sao/timing <id> <queue> <text> <dit> <decode> <first_sound> <rtf>`",
        _REQ_ERRORS,
        "Generate a clip (a new random seed unless `seed` is given); a cached clip is answered at once. "
        "`/sao/timing`: seconds waiting in the queue, encoding the prompt, sampling (the DiT's steps), decoding; "
        "from the request to its first sound when it was played while decoding (-1: not streamed); "
        "`rtf`: seconds of audio made per second of generation.",
    ),
    Row(
        "/sao/trigger",
        _REQ,
        "as /sao/gen, and `/sao/playing <id> <voice> <seed> 0` when it starts; "
        "`/sao/interrupted <id> <reason>` if it was playing while decoding and had to fade out",
        _REQ_ERRORS,
        "Play as soon as ready: a cached clip of the request (any seed, unless `seed` is given) "
        "is answered at once, else it is generated, and it starts while it still decodes as soon as the "
        "rest is predicted to be in before the decoded audio has played. A trailing 0 (release) is ignored.",
    ),
    Row(
        "/sao/loop",
        "`<id> <prompt...> <bars> [bpm] [key value ...] [1|0]`; keys as /sao/gen (not seconds, bars)",
        "as /sao/gen, then `/sao/playing <id> <voice> <seed> <nearest 0>` when it starts; "
        "`/sao/interrupted <id> <reason>` as /sao/trigger",
        _REQ_ERRORS + ", no_audio",
        'Make a loop of exactly `bars` 4/4 bars at `bpm` (default: the tempo), "<bpm> BPM" appended to the '
        "prompt, seam crossfaded; it plays looped, launched on the next bar (quantize permitting), while it "
        "still decodes once its seam will be in place before the first pass ends.",
    ),
    Row(
        "/sao/play",
        "`<id> [gain]` or `pad<n> [gain]` (e.g. `pad3`, 1-based in the current bank); gain 0..4 linear, default 1",
        "`/sao/playing <id|pad<n>> <voice> <seed> <nearest 0|1>` (nearest 1: the pad's clip was not ready, "
        "its nearest ready take plays)",
        "bad_args, bad_gain, unknown_id (no finished clip under that id), unknown_pad, not_rendered, no_audio",
        "Play a finished clip (the last one done under request `<id>`) or a pad of the loaded set now, "
        "or on the next beat/bar when quantize is on. A clip still decoding starts (and `/sao/playing` "
        "answers) once it can play to its end.",
    ),
    Row(
        "/sao/stop",
        "`<id>`, `pad<n>` or `all`",
        "`/sao/stopped <id|pad<n>|all> <voices>`",
        "bad_args, unknown_pad, no_audio",
        "Fade out (10 ms) the voices of that clip id or pad, or every voice.",
    ),
    Row(
        "/sao/pad/<n>",
        "`[velocity] [1|0]`: velocity 0..1 (a fraction) or 2..127 (MIDI); 0 is a release",
        "`/sao/playing pad<n> <voice> <seed> <nearest 0|1>` on a press; nothing on a release",
        "unknown_pad, not_rendered, bad_velocity, no_set, no_audio",
        "Hit pad `<n>` (1-16) of the current bank like MIDI note 35+n: gain from the velocity curve; a release "
        "ends gate-mode voices. Uses a take from the pad's variation pool, refilled in the background.",
    ),
    Row(
        "/sao/bank",
        "`<n>` (0-based bank index)",
        "`/sao/value bank <n>`",
        "bad_value, no_set",
        "Switch the pad bank (as MIDI program change `<n>`).",
    ),
    Row(
        "/sao/load",
        "`<name>`: a set in the daemon's sets folder (`--sets-dir`), e.g. `live-set` or `live-set.toml`",
        "`/sao/render <set> <ready> <total>` as pads become ready, then `/sao/loaded <set> <pads> <banks>`",
        "bad_set_name, no_file, bad_set (with file:line: reason; never the file's values), cancelled",
        "Load a set: a broken file is rejected and the running set stays; every pad is pre-rendered, "
        "then the new set replaces the old one. A later `/sao/load` replaces one still pre-rendering "
        "(its takes not made yet are cancelled; its sender gets `cancelled`).",
    ),
    Row(
        "/sao/cancel",
        "`<id>` or `all`",
        "`/sao/cancelled <id> <count>`; each cancelled request gets `/sao/error <id> cancelled ...`",
        "bad_id, unknown_id",
        "Cancel this sender's request `<id>` (queued or running), or `all` of this sender's requests. A sender's "
        "requests are those whose replies go where its replies go (its `/sao/hello` port, else its host's).",
    ),
    Row(
        "/sao/status",
        "",
        "`/sao/status <ready 0|1> <queued> <running> <clips> <cache_mb> <worker_pid> <audio 0|1> <voices> "
        "<underruns> <callback_errors> <bpm> <set> <bank> <stolen>`",
        "",
        'Queue, cache, worker and player state (`audio` 0: no audio device, export only; `set` "" when none; '
        "`stolen`: voices cut because every voice was busy). With a model pool three more atoms: "
        "`<serving pool|local|none> <actors> <busy>` (as /sao/pool).",
    ),
    Row(
        "/sao/pool",
        "",
        "one `/sao/pool/actor <name> <node> <device> <state> <jobs> <mean_seconds>` per actor, then "
        "`/sao/pool <serving pool|local|none> <actors> <busy>`",
        "",
        "The model pool (docs/cluster.md): each actor's node, device (`cpu`, `cuda:0`), state (loading, idle, busy, "
        "lost, failed, refused), clips made and mean seconds per clip; who serves (`local`: no actor is ready, the "
        "local worker makes the clips). Without `--pool`: `/sao/pool local 0 0`.",
    ),
    Row("/sao/ping", "`[atoms ...]`", "`/sao/pong [atoms ...]` (the same atoms)", "", "Liveness check."),
    Row(
        "/sao/hello",
        "`<reply_port>`",
        "`/sao/ready <0|1> <model>` on the new port",
        "bad_port",
        "Send this sender's replies to `<reply_port>` (0: to the port it sends from).",
    ),
    Row(
        "/sao/set/<param>",
        "`<value>`",
        "`/sao/value <param> <value>`",
        "unknown_param, bad_value",
        "Change a setting until the daemon stops: bpm, steps, cfg, sampler, export, export_format, "
        f"quantize ({', '.join(_GRIDS)}, off), tempo_source ({', '.join(TEMPO_SOURCES)}), "
        f"master_db ({_span('master_db', '..')}), bank (0-based). Settings are global: a change applies to "
        "every client's later requests and to the one player.",
    ),
    Row("/sao/get/<param>", "", "`/sao/value <param> <value>`", "unknown_param", "Read a setting."),
    Row(
        "/sao/info",
        "`[page]` (0 when left out)",
        "one `/sao/info <address> <arguments> <replies> <errors>` per row of this table on the page (4 rows), "
        "then `/sao/info/end <version> <rows> <page> <pages>`",
        "bad_args",
        "This table, a page at a time (ask for pages 0 to `<pages>` - 1).",
    ),
    Row(
        "(any other)",
        "",
        "",
        "bad_osc (not OSC at all), unknown_address, too_many",
        'Every bad datagram is answered with `/sao/error <id> <code> <message>` (`<id>` is "" when unknown). '
        "A datagram from a sender outside the allow-list gets no answer at all (docs/daemon.md, Security).",
    ),
)

ANNOUNCEMENTS = (
    ("/sao/startup", "the daemon has started and is loading the model"),
    ("/sao/ready <0|1> <model>", "1: the model is loaded and requests are served; 0: the worker is restarting or "
     "the daemon is stopping. With a model pool one more atom, `pool`, `local` or `none`: who serves, announced "
     "again when it changes (`local`: no pool actor is left, the local worker makes the clips)"),
    ("/sao/render <set> <ready> <total>", "pre-rendering a set: `ready` of `total` pad takes are in the cache"),
    ("/sao/loaded <set> <pads> <banks>", "the set is loaded and every pad is ready"),
    ("/sao/fallback <pad<n>> <seed>", "a pad's wanted take was not ready; the nearest ready take (seed) played"),
    ("/sao/tempo <bpm> <source>", "the tempo changed (source fixed, midi or link)"),
)  # fmt: skip

# Replies that end an exchange (`sao-live send --wait` stops on them).
FINAL_REPLIES = (
    "/sao/done",
    "/sao/error",
    "/sao/pong",
    "/sao/status",
    "/sao/pool",
    "/sao/value",
    "/sao/info/end",
    "/sao/cancelled",
    "/sao/ready",
    "/sao/playing",
    "/sao/stopped",
    "/sao/loaded",
)

ERRORS = {
    "bad_osc": "the datagram is not OSC",
    "unknown_address": "no handler for the address",
    "too_many": "a bundle of more than 64 messages: the first 64 were handled",
    "bad_args": "the arguments do not have the documented shape",
    "bad_id": "the id is not an int or a short string",
    "missing_prompt": "no prompt before the seconds",
    "empty_prompt": "the prompt is blank",
    "prompt_too_long": "prompt or negative prompt longer than 1000 characters",
    "bad_prompt": "the prompt is not text",
    "missing_seconds": "no seconds after the prompt",
    "bad_seconds": "seconds not a finite number in (0, model window]",
    "bad_seed": "seed not a whole number in [0, 2147483647] (or -1: random)",
    "bad_steps": "steps not a whole number in [1, 1000]",
    "bad_cfg": "cfg not a number in [0, 50]",
    "bad_sampler": "the model has no such sampler",
    "bad_negative": "the negative prompt is not text",
    "bad_bpm": f"bpm not a number in [{_span('bpm')}]",
    "bad_bars": "bars not in (0, 256], or bars without bpm",
    "bad_variations": "variations not a whole number in [1, 16]",
    "bad_priority": "priority not now, prerender, refill (0, 1, 2)",
    "bad_export": "export not 0, 1, wav, wav16, wav32f or flac",
    "no_export_dir": "export asked for, but the daemon has no export folder",
    "unknown_key": "a key the request does not know",
    "missing_value": "a key without its value",
    "busy": "the queue is full, or too many requesters wait for the same clip; try again later",
    "not_ready": "the model is not loaded yet",
    "shutting_down": "the daemon is stopping and takes no new requests",
    "shutdown": "the daemon stopped before the request was done",
    "cancelled": "the request was cancelled",
    "unknown_id": "no queued or running request with that id from this sender",
    "worker_crashed": "the model worker died twice on this request",
    "worker_unavailable": "the model worker failed to come back several times in a row; the daemon keeps trying, "
    "and `/sao/ready 1` announces its return (cached clips are still served)",
    "generation_failed": "the model raised an error for this request",
    "export_failed": "the clip was made but could not be written to the export folder",
    "cache_failed": "the clip was made but could not be stored in the cache (the message says why, e.g. "
    "no space left on the device holding the cache folder)",
    "bad_port": "port not a whole number in [0, 65535]",
    "unknown_param": "no such setting",
    "bad_value": "the value does not fit the setting",
    "bad_gain": f"gain not a number in [{_span('gain')}]",
    "bad_velocity": "velocity not a number in [0, 127]",
    "unknown_pad": "no such pad in the current bank of the loaded set",
    "not_rendered": "the pad has no ready take yet (it is being rendered)",
    "no_set": "no set is loaded",
    "no_audio": "the daemon runs without an audio device (export only)",
    "bad_set": "the set file is broken (the message names file, line and reason); the running set stays",
    "bad_set_name": "not a set name: letters, digits, spaces, '-', '_', '.'; no '/', no leading '.', no '..'",
    "no_file": "no set of that name in the sets folder",
    "internal": "a bug in sao-live (logged with its traceback)",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """The protocol and error tables as Markdown (the generated part of docs/osc.md)."""
    lines = [
        "| address | arguments | replies | errors | meaning |",
        "|---|---|---|---|---|",
    ]
    for r in PROTOCOL:
        cells = [f"`{r.address}`", r.arguments, r.replies, r.errors, r.meaning]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "Sent without a request:", "", "| message | meaning |", "|---|---|"]
    lines += [f"| `{_cell(m)}` | {what} |" for m, what in ANNOUNCEMENTS]
    lines += ["", "Error codes:", "", "| code | meaning |", "|---|---|"]
    lines += [f"| `{code}` | {what} |" for code, what in ERRORS.items()]
    return "\n".join(lines) + "\n"


BEGIN = "<!-- BEGIN generated by `python -m sao_live.daemon.protocol docs/osc.md`; edit protocol.py -->\n"
END = "<!-- END generated -->\n"


def rewrite(path: Path) -> bool:
    """Replaces the generated block of `path`; True when the file changed."""
    text = path.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    new = head + BEGIN + markdown() + END + tail
    path.write_text(new)
    return new != text


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/osc.md")
    print(f"{target}: {'rewritten' if rewrite(target) else 'up to date'}")

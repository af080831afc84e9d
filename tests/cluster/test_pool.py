"""A model pool on a real Ray cluster on this machine: `render` and `serve --pool` with the tiny model.

One cluster for the module (a head without CPUs and two worker nodes of one CPU each, one actor
per node). The tests run in the order written and share it: `render` first (its own driver, over
Ray's client), then one daemon joined to the cluster; from the node-kill test on, each test leaves
the cluster as the next one expects (one node killed, one added, then all gone).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from sao_live.testing.daemon import Client, DaemonProcess

PADS = 16
SET = f"""name = "pool-set"
model = "tiny-random"
[defaults]
seconds = 0.5
steps = 4
[[banks]]
{"".join(f'[[banks.pads]]{chr(10)}prompt = "pad {n}"{chr(10)}' for n in range(1, PADS + 1))}"""


def sao_live(tmp_path, *args, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
               XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))  # fmt: skip
    return subprocess.run([sys.executable, "-m", "sao_live.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def pool(client: Client) -> tuple[tuple, list[tuple]]:
    """`/sao/pool`: its final reply (serving, actors, busy) and its actor rows (name, node, device, state, ...)."""
    mark = client.mark()
    client.send("/sao/pool")
    final = client.wait_for("/sao/pool", since=mark, timeout=10)
    return final, [args for address, args in client.messages[mark:] if address == "/sao/pool/actor"]


def wait_pool(client: Client, ok, timeout: float = 180.0) -> list[tuple]:
    deadline = time.monotonic() + timeout
    while True:
        final, rows = pool(client)
        if ok(final, rows):
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pool did not get there: {final} {rows}")
        time.sleep(0.5)


def node_of(actor: str) -> str:
    """The Ray node id prefix in an actor's name (`<ip>/<node id[:8]>#<n>`)."""
    return actor.split("/")[1].split("#")[0]


def first(client: Client, address: str, id) -> int:
    """Where the first `address` message for `id` is in what the client received."""
    return next(i for i, (a, args) in enumerate(client.messages) if a == address and args and args[0] == id)


def test_render_fans_a_set_out_over_the_pool_and_makes_every_take_once(tmp_path, cluster, tiny_t5):
    """`render --pool ray://...`: a driver of its own over Ray's client, the set's takes on both nodes."""
    set_file, config, cache = tmp_path / "show.toml", tmp_path / "config.toml", tmp_path / "cache"
    set_file.write_text(SET)
    config.write_text("pool_cpus_per_actor = 1\n")
    done = sao_live(tmp_path, "render", str(set_file), "--text-encoder", str(tiny_t5), "--device", "cpu",
                    "--cache-dir", str(cache), "--config", str(config), "--pool", cluster.client_address)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    jobs = re.findall(r"job \d+: '(pad \d+)', 0\.5 s, seed \d+ \(attempt 1\)(?: on (\S+))?", done.stderr)
    assert sorted(p for p, _ in jobs) == sorted(f"pad {n}" for n in range(1, PADS + 1)), done.stderr[-4000:]
    actors = {actor for _, actor in jobs}
    assert "" not in actors, "every take was made on the pool (render waits for its actors)"
    assert len({node_of(a) for a in actors}) == 2, actors
    listed = sao_live(tmp_path, "cache", "ls", "--cache-dir", str(cache))
    prompts = sorted(row.rsplit("  ", 1)[-1] for row in listed.stdout.splitlines())
    assert prompts == sorted(f"'pad {n}'" for n in range(1, PADS + 1)), listed.stdout
    verified = sao_live(tmp_path, "cache", "verify", "--cache-dir", str(cache))
    assert verified.returncode == 0 and f"0 problems, {PADS} clips indexed" in verified.stdout, verified.stdout


@pytest.fixture(scope="module")
def pooled(cluster, tmp_path_factory, tiny_t5):
    """A daemon joined to the cluster (`--pool ray`, RAY_ADDRESS), once both nodes' actors are ready."""
    config = dict(audio_device="none", midi_in="none", pool="ray", pool_cpus_per_actor=1)
    daemon = DaemonProcess(tmp_path_factory.mktemp("pooled"), tiny_t5, config=config,
                           env=dict(RAY_ADDRESS=cluster.address))  # fmt: skip
    daemon.start(timeout=120)
    with daemon.client() as c:
        wait_pool(c, lambda final, rows: final == ("pool", 2, 0))
    yield daemon
    code = daemon.stop()
    assert code == 0, f"the daemon exited with {code}:\n{daemon.log()[-4000:]}"


@pytest.fixture
def client(pooled):
    c = pooled.client()
    yield c
    c.close()


def test_jobs_run_on_both_nodes_at_once(client):
    client.send("/sao/gen", "a", "kick", 1.0, "steps", 60, "seed", 11)
    client.send("/sao/gen", "b", "snare", 1.0, "steps", 60)
    client.send("/sao/gen", "a-twin", "kick", 1.0, "steps", 60, "seed", 11)  # joins a's job, as without a pool
    (kind_a, a), (kind_b, b) = client.wait_reply("a", timeout=120), client.wait_reply("b", timeout=120)
    assert kind_a == kind_b == "/sao/done", (a, b)
    assert client.wait_reply("a-twin", timeout=30)[1][1:] == a[1:]  # the same file, made once, on the same actor
    assert len(client.of("/sao/progress", "a")) >= 10  # per step (at most one per 5%), from the actor
    # each made progress before the other was done: side by side, and each answer says where it ran
    assert first(client, "/sao/progress", "a") < first(client, "/sao/done", "b")
    assert first(client, "/sao/progress", "b") < first(client, "/sao/done", "a")
    assert node_of(a[5]) != node_of(b[5]), (a, b)
    final, rows = pool(client)
    assert final == ("pool", 2, 0) and sorted(r[4] for r in rows) == [1, 1] and all(r[5] > 0 for r in rows), rows
    assert {r[2] for r in rows} == {"cpu"}


def test_priorities_hold_across_the_pool(client):
    """Both actors busy; refill, prerender and now queued in that order: now starts on the first actor
    freed, prerender on the second, refill last."""
    for blocker in ("x", "y"):
        client.send("/sao/gen", blocker, f"blocker {blocker}", 2.0, "steps", 1000)
        client.wait_for("/sao/progress", lambda args, b=blocker: args[0] == b, timeout=60)
    for name in ("refill", "prerender", "now"):
        client.send("/sao/gen", name, f"wait {name}", 0.5, "steps", 40, "priority", name)
        client.wait_for("/sao/queued", lambda args, n=name: args[0] == n, timeout=10)
    client.send("/sao/cancel", "x")
    client.wait_for("/sao/progress", lambda args: args[0] == "now", timeout=60)
    client.send("/sao/cancel", "y")
    for name in ("refill", "prerender", "now"):
        assert client.wait_reply(name, timeout=120)[0] == "/sao/done"
    starts = [first(client, "/sao/progress", name) for name in ("now", "prerender", "refill")]
    assert starts == sorted(starts), starts


def test_cancel_reaches_a_running_remote_job(client, pooled):
    client.send("/sao/gen", "long", "long pad", 4.0, "steps", 1000)
    client.wait_for("/sao/progress", lambda args: args[0] == "long", timeout=60)
    client.send("/sao/cancel", "long")
    assert client.wait_for("/sao/cancelled", timeout=10) == ("long", 1)
    assert client.wait_reply("long", timeout=10)[1][1] == "cancelled"
    # The actor is busy until it answers `cancelled` itself: idle again long before 1000 steps could be made.
    started = time.monotonic()
    wait_pool(client, lambda final, rows: final == ("pool", 2, 0), timeout=30)
    assert time.monotonic() - started < 20
    shown = len(client.of("/sao/progress", "long"))
    time.sleep(1.0)
    assert len(client.of("/sao/progress", "long")) == shown and not client.of("/sao/done", "long")


def test_a_node_killed_mid_job_the_job_finishes_on_the_other_once(client, pooled, cluster, tmp_path):
    client.send("/sao/gen", "survivor", "rolling toms", 1.0, "steps", 150)
    client.wait_for("/sao/progress", lambda args: args[0] == "survivor", timeout=60)
    _, rows = pool(client)
    (busy,) = [r for r in rows if r[3] == "busy"]
    (idle,) = [r for r in rows if r[3] == "idle"]
    cluster.kill_node(cluster.node(node_of(busy[0])))
    kind, args = client.wait_reply("survivor", timeout=120)
    assert kind == "/sao/done" and args[5] == idle[0], args
    time.sleep(2.0)  # nothing more comes for it: one answer
    assert len(client.of("/sao/done", "survivor")) == 1 and not client.of("/sao/error", "survivor")
    assert "trying again (attempt 2)" in pooled.log()
    final, rows = pool(client)
    states = {r[0]: r[3] for r in rows}
    assert states[busy[0]] == "lost" and states[idle[0]] == "idle" and final == ("pool", 1, 0), rows
    verified = sao_live(tmp_path, "cache", "verify", "--cache-dir", str(pooled.cache_dir))
    assert verified.returncode == 0 and verified.stdout.startswith("0 problems"), verified.stdout


def test_a_node_that_joins_gets_work(client, cluster):
    node = cluster.add_node(cpus=1)
    wait_pool(client, lambda final, rows: any(node.node_id.startswith(node_of(r[0])) and r[3] == "idle" for r in rows))
    client.send("/sao/gen", "c", "clap", 1.0, "steps", 40)
    client.send("/sao/gen", "d", "shaker", 1.0, "steps", 40)
    made_on = {client.wait_reply(id, timeout=120)[1][5] for id in ("c", "d")}
    assert len(made_on) == 2 and any(node.node_id.startswith(node_of(a)) for a in made_on), made_on


def test_with_every_node_gone_the_local_worker_serves(client, cluster):
    for node in list(cluster.nodes):
        cluster.kill_node(node)
    assert client.wait_for("/sao/ready", lambda args: args[2] == "local", timeout=60) == (1, "tiny-random", "local")
    kind, args = client.request("/sao/gen", "fallback", "hat", 0.5, "steps", 4, timeout=60)
    assert kind == "/sao/done" and args[5] == "local", args
    client.send("/sao/status")
    assert client.wait_for("/sao/status", timeout=10)[-3:] == ("local", 0, 0)

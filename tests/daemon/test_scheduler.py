"""Scheduler rules: priority then arrival, merge by key, cancel, positions, a bounded queue."""

from __future__ import annotations

import pytest

from sao_live.daemon.scheduler import Busy, Requester, Scheduler
from sao_live.request import Request

REQ = Request("kick", 1.0, 0, steps=8, cfg=1.0, sampler="pingpong")


def who(id, priority=0, host="127.0.0.1", port=9322):
    return Requester(host, port, id, priority)


HERE = ("127.0.0.1", 9322)  # where who()'s replies go


def test_priority_before_arrival():
    s = Scheduler()
    s.submit("refill", REQ, who(1, priority=2))
    s.submit("prerender", REQ, who(2, priority=1))
    s.submit("now", REQ, who(3, priority=0))
    s.submit("now2", REQ, who(4, priority=0))
    order = []
    while (job := s.next()) is not None:
        order.append(job.key)
        s.finish(job)
    assert order == ["now", "now2", "prerender", "refill"]


def test_identical_keys_merge_and_lift_priority():
    s = Scheduler()
    s.submit("a", REQ, who(1, priority=0))
    job, merged = s.submit("b", REQ, who(2, priority=2))
    assert not merged and s.position(job) == 1
    same, merged = s.submit("b", REQ, who(3, priority=0))
    assert merged and same is job and [r.id for r in job.requesters] == [2, 3]
    assert job.priority == 0 and len(s) == 2


def test_merge_into_the_running_job():
    s = Scheduler()
    s.submit("a", REQ, who(1))
    running = s.next()
    job, merged = s.submit("a", REQ, who(2))
    assert merged and job is running and s.position(job) == 0


def test_positions_count_the_running_job():
    s = Scheduler()
    jobs = [s.submit(k, REQ, who(i))[0] for i, k in enumerate("abc")]
    assert [s.position(j) for j in jobs] == [0, 1, 2]
    s.next()
    assert [s.position(j) for j in jobs] == [0, 1, 2]  # a runs; b is next after it


def test_full_queue_is_busy_but_merges_still_join():
    s = Scheduler(max_queued=2)
    s.submit("a", REQ, who(1))
    s.submit("b", REQ, who(2))
    with pytest.raises(Busy, match="the queue is full \\(2 jobs waiting\\)") as err:
        s.submit("c", REQ, who(3))
    assert err.value.code == "busy"  # the code clients see in /sao/error
    assert s.submit("a", REQ, who(4))[1]


def test_cancel_one_requester_keeps_the_job_for_the_others():
    s = Scheduler()
    s.submit("a", REQ, who(1))
    s.submit("a", REQ, who(2, host="10.0.0.2"))
    removed = s.cancel(HERE, 1)
    assert [(j.key, r.id) for j, r in removed] == [("a", 1)]
    assert len(s) == 1 and [r.id for r in s.find("a").requesters] == [2]
    assert s.cancel(HERE, 2) == []  # the same id from another host is not ours
    s.cancel(("10.0.0.2", 9322), 2)
    assert len(s) == 0


def test_cancel_is_scoped_to_where_the_replies_go():
    s = Scheduler()
    s.submit("a", REQ, who(1, port=9001))
    s.submit("b", REQ, who(1, port=9002))  # another client on the same host, the same id
    assert s.cancel(("127.0.0.1", 9003), 1) == []
    assert [j.key for j, _ in s.cancel(("127.0.0.1", 9002), 1)] == ["b"]
    assert [j.key for j in s.jobs()] == ["a"]


def test_cancel_running_marks_it_for_the_worker():
    s = Scheduler()
    s.submit("a", REQ, who(1))
    job = s.next()
    s.cancel(HERE, 1)
    assert job.cancelled and s.running == [job]  # the worker stops it; finish() then clears it


def test_cancel_all_takes_only_the_senders_own_requests():
    s = Scheduler()
    for i, k in enumerate("abc"):
        s.submit(k, REQ, who(i))
    s.submit("other", REQ, who(9, host="10.0.0.9"))
    running = s.next()
    assert len(s.cancel(HERE, None)) == 3
    assert [j.key for j in s.jobs() if not j.cancelled] == ["other"] and running.cancelled


def test_requeue_puts_the_job_first_in_its_priority():
    s = Scheduler()
    s.submit("a", REQ, who(1))
    s.submit("b", REQ, who(2))
    job = s.next()
    s.requeue(job)
    assert s.running == [] and s.next() is job and job.attempts == 2


def test_each_attempt_reports_progress_from_zero():
    s = Scheduler()
    job, _ = s.submit("a", REQ, who(1))
    assert job.progress == 0.0  # nothing reported while it waits
    assert s.next() is job and job.progress == 0.0
    job.progress = 0.6  # what the service last sent its requesters
    s.requeue(job)  # its worker died: the next attempt starts over
    assert s.next() is job and job.progress == 0.0


def test_jobs_run_side_by_side_on_free_slots_most_urgent_first():
    s = Scheduler()
    s.submit("refill", REQ, who(1, priority=2))
    s.submit("render", REQ, who(2, priority=1))
    s.submit("now", REQ, who(3, priority=0))
    first, second = s.next(), s.next()
    assert [first.key, second.key] == ["now", "render"] and s.running == [first, second]
    refill = s.find("refill")
    assert s.position(refill) == 2 and s.position(first) == 0
    s.finish(first)
    assert s.running == [second] and s.next() is refill and s.next() is None
    assert [j.key for j in s.jobs()] == ["render", "refill"]


def test_a_seedless_trigger_finds_a_job_of_its_family():
    s = Scheduler()
    s.submit("a", REQ, who(1), family="kick")
    s.submit("b", REQ, who(2), family="snare")
    assert s.find_family("snare").key == "b" and s.find_family("hat") is None
    running = s.next()
    assert s.find_family("kick") is running


def test_a_new_requester_revives_a_cancelled_running_job():
    s = Scheduler()
    s.submit("a", REQ, who(1))
    job = s.next()
    s.cancel(HERE, 1)
    same, merged = s.submit("a", REQ, who(2))
    assert merged and same is job and not job.cancelled  # the worker must not stop it now


def test_a_requeued_job_goes_before_one_lifted_while_it_ran():
    s = Scheduler()
    s.submit("old", REQ, who(1, priority=1))
    s.submit("now", REQ, who(2, priority=0))
    job = s.next()
    assert job.key == "now" and not job.cancelled
    s.submit("old", REQ, who(3, priority=0))  # lifted to "now", and it arrived first
    s.requeue(job)
    assert [j.key for j in s.jobs()] == ["now", "old"]


def test_a_requester_that_says_only_where_wants_a_reply_now():
    r = Requester("10.0.0.1", 9000, 7)
    assert (r.priority, r.export, r.play) == (0, None, 0)


def test_a_job_requeued_again_and_again_stays_first():
    s = Scheduler()
    for i, k in enumerate("abcd"):
        s.submit(k, REQ, who(i))
    job = s.next()
    for attempt in range(2, 6):  # its worker dies four times in a row
        s.requeue(job)
        assert [j.key for j in s.jobs()] == ["a", "b", "c", "d"]
        assert s.next() is job and job.attempts == attempt


def test_drain_returns_the_queue_in_order_and_keeps_the_running_job():
    s = Scheduler()
    s.submit("running", REQ, who(0))
    running = s.next()
    s.submit("late", REQ, who(1, priority=2))
    s.submit("soon", REQ, who(2, priority=0))
    s.submit("mid", REQ, who(3, priority=1))
    assert [j.key for j in s.drain()] == ["soon", "mid", "late"]
    assert len(s) == 0 and s.jobs() == [running] and s.drain() == []


def test_finish_only_the_running_job():
    s = Scheduler()
    queued, _ = s.submit("a", REQ, who(1))
    with pytest.raises(RuntimeError, match="not a running job"):
        s.finish(queued)
    s.finish(s.next())
    assert s.running == [] and s.next() is None


def test_the_queue_holds_at_least_one_job():
    with pytest.raises(ValueError, match="at least 1"):
        Scheduler(max_queued=0)
    s = Scheduler(max_queued=1)
    s.submit("a", REQ, who(1))
    with pytest.raises(Busy):
        s.submit("b", REQ, who(2))


def test_requesters_per_job_are_bounded():
    s = Scheduler(max_requesters=2)
    s.submit("a", REQ, who(1))
    s.submit("a", REQ, who(2))
    with pytest.raises(Busy, match="2 requesters already wait for this clip") as err:
        s.submit("a", REQ, who(3))
    assert err.value.code == "busy" and [r.id for r in s.find("a").requesters] == [1, 2]
    assert not s.submit("b", REQ, who(3))[1]  # another clip still queues
    one = Scheduler(max_requesters=1)  # no merging at all
    one.submit("a", REQ, who(1))
    with pytest.raises(Busy, match="1 requesters already wait"):
        one.submit("a", REQ, who(2))
    with pytest.raises(ValueError, match="at least 1"):
        Scheduler(max_requesters=0)


def test_a_made_job_is_joined_until_it_is_delivered():
    s = Scheduler()
    s.submit("a", REQ, who(1), family="kick")
    job = s.next()
    s.deliver(job)
    assert s.running == [] and s.next() is None and len(s) == 0  # the worker is free, nothing to make
    same, merged = s.submit("a", REQ, who(2))
    assert merged and same is job and s.position(job) == 0 and [r.id for r in job.requesters] == [1, 2]
    assert s.find_family("kick") is job
    assert s.cancel("127.0.0.1", 2) == []  # its clip is made: it is answered, not cancelled
    s.delivered(job)
    assert s.find("a") is None
    fresh, merged = s.submit("a", REQ, who(3))
    assert not merged and fresh is not job
    with pytest.raises(RuntimeError, match="not being delivered"):
        s.delivered(job)

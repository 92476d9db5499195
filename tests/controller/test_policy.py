"""The controller's decisions as tables (``aima.controller.policy``): no process, no port, no database."""

from __future__ import annotations

import pytest

from aima.controller import policy
from aima.controller.policy import ExitFacts, RestartRules, Use

RULES = RestartRules(max_restarts=5, backoff_s=1.0, backoff_max_s=60.0)
NOW = 1_000_000.0


def exit_facts(**kw: object) -> ExitFacts:
    base: dict[str, object] = dict(service_name="chat", instance_id="ins-1", desired="running", policy="on-failure",
                                   restarts=0, exit_code=-9, reason="killed by signal SIGKILL", fatal=False,
                                   ready_at=NOW - 30, now=NOW)
    base.update(kw)
    return ExitFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("facts", "action", "restarts", "delay", "words"), [
    # a crash of a service that was ready: restarted after the first backoff
    ({}, "restart", 1, 1.0, "restarting in 1s (attempt 1 of 5)"),
    # backoff doubles per attempt and is capped
    ({"restarts": 3}, "restart", 4, 8.0, "attempt 4 of 5"),
    ({"restarts": 4}, "restart", 5, 16.0, "attempt 5 of 5"),
    # the cap: given up, saying the last reason
    ({"restarts": 5}, "give_up", 5, 0.0, "gave up after 5 restarts; last: killed by signal SIGKILL"),
    # ready for longer than 10 minutes before the crash: a fresh budget
    ({"restarts": 5, "ready_at": NOW - 601}, "restart", 1, 1.0, "attempt 1 of 5"),
    # a clean exit under on-failure: left stopped
    ({"exit_code": 0}, "leave", 0, 0.0, "instance ins-1 killed by signal SIGKILL"),
    # ... but restarted under `always`
    ({"exit_code": 0, "policy": "always"}, "restart", 1, 1.0, "restarting"),
    # `never`, or a service no longer wanted running: left as it is
    ({"policy": "never"}, "leave", 0, 0.0, "instance ins-1"),
    ({"desired": "stopped"}, "leave", 0, 0.0, "instance ins-1"),
    # a fatal log line, or an exit before it was ever ready: not restarted, saying what to do
    ({"fatal": True}, "leave", 0, 0.0, "not restarted after a fatal error; fix the cause, then `aima service start "
                                       "chat`"),
    ({"ready_at": None}, "leave", 0, 0.0, "not restarted after an exit before it was ever ready"),
])
def test_after_exit(facts: dict[str, object], action: str, restarts: int, delay: float, words: str) -> None:
    d = policy.after_exit(exit_facts(**facts), RULES)
    assert (d.action, d.restarts, d.delay_s) == (action, restarts, delay)
    assert words in d.message


def test_backoff_is_capped() -> None:
    rules = RestartRules(max_restarts=20, backoff_s=1.0, backoff_max_s=60.0)
    delays = [policy.after_exit(exit_facts(restarts=n), rules).delay_s for n in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_a_launch_whose_place_is_away_is_retried_with_the_backoff_without_a_cap() -> None:
    assert [policy.retry_launch(n, RULES) for n in (0, 1, 5, 40)] == [(1, 1.0), (2, 2.0), (6, 32.0), (41, 60.0)]


def use(sid: str, last: float, **kw: object) -> Use:
    return Use(sid, last, **kw)  # type: ignore[arg-type]


def test_idle_victims() -> None:
    services = [
        use("a", NOW - 100, idle_ttl_s=60),  # idle for longer than its TTL
        use("b", NOW - 10, idle_ttl_s=60),  # used recently
        use("c", NOW - 100, idle_ttl_s=60, pinned=True),  # pinned: never
        use("d", NOW - 100, idle_ttl_s=60, busy=True),  # a request in flight
        use("e", NOW - 10_000),  # no TTL
        use("f", NOW - 60, idle_ttl_s=60),  # exactly its TTL
    ]
    assert policy.idle_victims(services, NOW) == [("a", 100, 60), ("f", 60, 60)]


GiB = 1 << 30


def test_make_room_unloads_least_recently_used_first_and_only_what_is_needed() -> None:
    loaded = [use("old", NOW - 300, memory_bytes=3 * GiB, devices=("cpu",)),
              use("older", NOW - 900, memory_bytes=3 * GiB, devices=("cpu",)),
              use("new", NOW - 5, memory_bytes=3 * GiB, devices=("cpu",)),
              use("gpu", NOW - 9999, memory_bytes=3 * GiB, devices=("gpu0",))]
    (room,) = policy.make_room(4 * GiB, ["cpu"], {"cpu": 10 * GiB, "gpu0": 8 * GiB}, loaded)
    assert room.victims == ["older"] and room.fits and room.used == 9 * GiB
    (room,) = policy.make_room(7 * GiB, ["cpu"], {"cpu": 10 * GiB}, loaded)
    assert room.victims == ["older", "old"] and room.fits
    # it fits already: nothing unloaded
    (room,) = policy.make_room(1 * GiB, ["cpu"], {"cpu": 10 * GiB}, loaded)
    assert room.victims == [] and room.fits
    # no budget known for a device: nothing to check there
    assert policy.make_room(1 * GiB, ["gpu1"], {"cpu": 10 * GiB}, loaded) == []


def test_make_room_never_unloads_pinned_or_busy_and_unloads_nothing_when_it_cannot_fit() -> None:
    loaded = [use("pinned", NOW - 900, memory_bytes=5 * GiB, devices=("cpu",), pinned=True),
              use("busy", NOW - 800, memory_bytes=3 * GiB, devices=("cpu",), busy=True),
              use("idle", NOW - 700, memory_bytes=1 * GiB, devices=("cpu",))]
    (room,) = policy.make_room(2 * GiB, ["cpu"], {"cpu": 10 * GiB}, loaded)
    assert room.victims == ["idle"] and room.fits
    (room,) = policy.make_room(3 * GiB, ["cpu"], {"cpu": 10 * GiB}, loaded)
    assert room.victims == [] and not room.fits  # 8 GiB stay whatever happens: unloading "idle" would not help
    assert "needs 3.0 GiB on cpu" in room.refusal("chat", 3 * GiB)
    assert "only 1.0 GiB of its 10.0 GiB budget is free" in room.refusal("chat", 3 * GiB)


def test_adoption_by_recorded_identity_never_starts_and_finds_orphans() -> None:
    recorded = [policy.Recorded("run-alive", "running", True), policy.Recorded("start-alive", "starting", True),
                policy.Recorded("stop-alive", "stopping", True), policy.Recorded("stop-gone", "stopping", False),
                policy.Recorded("run-gone", "running", False), policy.Recorded("start-gone", "starting", False)]
    plan = policy.adoption(recorded, found=["run-alive", "stray", "stray", "start-alive", "other"])
    assert plan.adopt == ["run-alive", "start-alive"]
    assert plan.stop == ["stop-alive"]
    assert plan.stopped == ["stop-gone"]
    assert plan.exited == ["run-gone", "start-gone"]
    assert plan.orphans == ["stray", "other"]
    assert policy.adoption([], []) == policy.Adoption()

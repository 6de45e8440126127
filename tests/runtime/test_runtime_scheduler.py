"""The pure scheduler, driven with fake step outputs (no model)."""

from __future__ import annotations

import pytest

from runtime.errors import GenerationError, QueueFull
from runtime.scheduler import Request, Scheduler, StepOutputs

EOS = 0


def req(rid: str, max_tokens: int = 5) -> Request:
    return Request(rid, [1, 2, 3], max_tokens, frozenset({EOS}))


def step(s: Scheduler, tokens: dict[str, int] | None = None, finished: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    plan = s.schedule()
    toks = {rid: 7 for rid in plan.scheduled}
    toks.update({k: v for k, v in (tokens or {}).items() if k in toks})
    return plan, s.update(StepOutputs(toks, finished))


def test_admission_up_to_max_batch_rest_wait() -> None:
    s = Scheduler(max_batch=2, max_queue=10)
    for r in "abc":
        s.add(req(r))
    plan = s.schedule()
    assert plan.prefill == ("a", "b") and plan.decode == ()
    assert s.running == ("a", "b") and s.waiting == ("c",)
    s.update(StepOutputs({"a": 7, "b": 7}))
    plan2 = s.schedule()
    assert plan2.prefill == () and plan2.decode == ("a", "b")


def test_bounded_queue_raises_queue_full() -> None:
    s = Scheduler(max_batch=1, max_queue=2)
    s.add(req("a"))
    s.add(req("b"))
    with pytest.raises(QueueFull) as info:
        s.add(req("c"))
    assert isinstance(info.value, GenerationError) and info.value.max_queue == 2
    s.schedule()  # "a" leaves the queue for the batch -> room for one more
    s.add(req("c"))
    assert s.waiting == ("b", "c")


def test_duplicate_id_and_protocol_errors() -> None:
    s = Scheduler(max_batch=1, max_queue=2)
    s.add(req("a"))
    with pytest.raises(ValueError):
        s.add(req("a"))
    with pytest.raises(RuntimeError):
        s.update(StepOutputs({}))
    s.schedule()
    with pytest.raises(RuntimeError):
        s.schedule()
    with pytest.raises(ValueError):
        s.update(StepOutputs({}))  # "a" was scheduled but got no token


def test_finishing_by_eos_max_tokens_and_engine_flag() -> None:
    s = Scheduler(max_batch=3, max_queue=3)
    s.add(req("eos"))
    s.add(req("short", max_tokens=2))
    s.add(req("stop"))
    _, done = step(s, {"eos": 5})
    assert done == []
    _, done = step(s, {"eos": EOS}, finished=frozenset({"stop"}))
    assert sorted(done) == ["eos", "short", "stop"]
    assert s.get("short") is None and not s.has_work()
    assert req("x").output_ids == []


def test_outputs_accumulate() -> None:
    s = Scheduler(max_batch=1, max_queue=1)
    r = req("a", max_tokens=3)
    s.add(r)
    for tok in (4, 5, 6):
        step(s, {"a": tok})
    assert r.output_ids == [4, 5, 6]


def test_cancel_waiting_and_running_frees_slot() -> None:
    s = Scheduler(max_batch=1, max_queue=5)
    for r in "abc":
        s.add(req(r, max_tokens=100))
    step(s)
    assert s.cancel("b") is True  # waiting: gone at once
    assert s.waiting == ("c",)
    assert s.cancel("a") is True  # running: its row is released next step, and the slot is reused
    plan = s.schedule()
    assert plan.release == ("a",) and plan.decode == () and plan.prefill == ("c",)
    s.update(StepOutputs({"c": 7}))
    assert s.cancel("nope") is False and s.cancel("a") is False


def test_cancel_while_step_in_flight_ignores_its_output() -> None:
    s = Scheduler(max_batch=2, max_queue=2)
    s.add(req("a"))
    s.add(req("b"))
    s.schedule()
    s.cancel("a")
    assert s.update(StepOutputs({"a": EOS, "b": 7})) == []  # a's EOS is ignored: it was cancelled
    assert s.schedule().release == ("a",)


def test_join_mid_flight() -> None:
    s = Scheduler(max_batch=4, max_queue=4)
    s.add(req("a", max_tokens=10))
    step(s)
    step(s)
    s.add(req("b", max_tokens=10))
    plan, _ = step(s)
    assert plan.decode == ("a",) and plan.prefill == ("b",)
    plan, _ = step(s)
    assert plan.decode == ("a", "b") and plan.prefill == ()


def test_static_batching_waits_for_the_batch_to_drain() -> None:
    s = Scheduler(max_batch=4, max_queue=4, allow_join=False)
    s.add(req("a", max_tokens=2))
    step(s)
    s.add(req("b"))
    plan, done = step(s)
    assert plan.prefill == () and done == ["a"]
    plan, _ = step(s)
    assert plan.prefill == ("b",)


def test_abort_all() -> None:
    s = Scheduler(max_batch=1, max_queue=3)
    s.add(req("a"))
    s.add(req("b"))
    s.schedule()
    assert sorted(s.abort_all()) == ["a", "b"]
    assert not s.has_work() and s.schedule().empty


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        Scheduler(max_batch=0, max_queue=1)
    s = Scheduler(max_batch=1, max_queue=1)
    with pytest.raises(ValueError):
        s.add(req("a", max_tokens=0))


def test_prefill_token_budget_spreads_a_burst_over_steps() -> None:
    s = Scheduler(max_batch=8, max_queue=8, max_prefill_tokens=7)  # each prompt is 3 tokens
    for rid in "abcde":
        s.add(req(rid, max_tokens=10))
    plan, _ = step(s)
    assert plan.prefill == ("a", "b") and plan.decode == ()
    plan, _ = step(s)
    assert plan.prefill == ("c", "d") and plan.decode == ("a", "b")
    plan, _ = step(s)
    assert plan.prefill == ("e",)
    big = Scheduler(max_batch=2, max_queue=2, max_prefill_tokens=1)  # a prompt over budget still runs, alone
    big.add(req("x"))
    big.add(req("y"))
    assert step(big)[0].prefill == ("x",)
    with pytest.raises(ValueError):
        Scheduler(max_batch=1, max_queue=1, max_prefill_tokens=0)


def sized(rid: str, length: int, max_tokens: int = 10) -> Request:
    return Request(rid, list(range(1, length + 1)), max_tokens, frozenset({EOS}))


def test_a_burst_is_admitted_shortest_prompt_first_within_the_budget() -> None:
    s = Scheduler(max_batch=8, max_queue=8, max_prefill_tokens=10)
    for rid, length in (("long", 9), ("mid", 5), ("short", 2), ("tiny", 1), ("mid2", 5)):
        s.add(sized(rid, length))
    plan, _ = step(s)
    assert plan.prefill == ("tiny", "short", "mid")  # 1 + 2 + 5 tokens; mid2 (5 more) is over the budget
    plan, _ = step(s)
    assert plan.prefill == ("mid2",) and plan.decode == ("tiny", "short", "mid")  # long (9) no longer fits with it
    plan, _ = step(s)
    assert plan.prefill == ("long",)


def test_a_long_prompt_is_not_starved_by_a_stream_of_short_ones() -> None:
    s = Scheduler(max_batch=100, max_queue=100, max_prefill_tokens=4, max_wait_steps=3)
    s.add(sized("long", 4))
    admitted: list[tuple[str, ...]] = []
    for i in range(6):
        s.add(sized(f"s{i}", 3))  # a new short prompt every step takes the whole budget
        plan, _ = step(s)
        admitted.append(plan.prefill)
    assert admitted[:3] == [("s0",), ("s1",), ("s2",)]
    assert admitted[3] == ("long",)  # waited max_wait_steps steps: goes before the shorter ones
    assert admitted[4] == ("s3",)
    fifo = Scheduler(max_batch=4, max_queue=4, max_wait_steps=0)  # 0: plain arrival order
    fifo.add(sized("b", 5))
    fifo.add(sized("a", 1))
    assert fifo.schedule().prefill == ("b", "a")
    with pytest.raises(ValueError):
        Scheduler(max_batch=1, max_queue=1, max_wait_steps=-1)


def test_cancelled_and_aborted_waiting_requests_leave_no_trace() -> None:
    s = Scheduler(max_batch=1, max_queue=4)
    s.add(sized("a", 2))
    s.add(sized("b", 1))
    assert s.cancel("b") and s.schedule().prefill == ("a",)
    s.add(sized("c", 1))
    s.abort_all()
    s.add(sized("c", 1))  # the id is free again
    assert s.waiting == ("c",)

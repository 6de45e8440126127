"""The user simulator derived from a dialogue definition: goals, the user's reactions, dialogues with the FSM."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Sequence

import pytest

from policy import Decision, FSMPolicy, Observation
from policy.botshape import questions
from policy.simulator import (
    DialogueSimulation,
    Goal,
    SimBot,
    SimConfig,
    SimulatedUser,
    SimulatorError,
    UserAct,
    Users,
    Want,
    draw_goal,
    with_config,
)

BOOK = (("party_size", "4"), ("day", "friday"))
FOOD = (("dish", "noodles"), ("note", "no peanuts"))


def booking(**kw: object) -> Want:
    return Want("task", "book_table", "action_book", "booking", BOOK, **kw)  # type: ignore[arg-type]


def user(tiny: SimBot, *wants: Want, patience: int = 2, opener: str | None = None) -> SimulatedUser:
    u = SimulatedUser(Goal(tuple(wants), opener, patience), tiny)
    u.first_act()
    return u


def test_goals_come_from_the_definition(tiny: SimBot) -> None:
    rng = random.Random(0)
    goals = [draw_goal(tiny, SimConfig(), rng) for _ in range(600)]
    wants = [w for g in goals for w in g.wants]
    kinds = Counter(w.kind for w in wants)
    assert set(kinds) == {"task", "ask", "handoff", "cancel"}
    expects = {w.expects for w in wants}
    assert {"action_book", "action_order_food", "action_answer_kb", "action_handoff", "utter_cancelled",
            "utter_fallback", "utter_greet", "utter_goodbye"} <= expects
    for g in goals:
        if g.wants[0].kind == "task":  # values from the bot's data (a second task may say another one)
            assert all(v in tiny.values[s] for s, v in g.wants[0].values)
    for w in wants:
        assert set(w.upfront) <= {"party_size", "day", "dish"}  # only what an entity extractor can read
    assert any(len(g.wants) > 1 and g.wants[1].kind == "task" for g in goals)  # a second task
    assert any(w.switch_from for w in wants) and any(w.wrong_first for w in wants) and any(w.interrupt for w in wants)
    assert any(w.decline for w in wants) and any(w.refused for w in wants)
    assert all(not w.decline or w.task == "booking" for w in wants)  # only a task with a confirmation
    assert all(g.wants[-1].kind == "handoff" or all(w.kind != "handoff" for w in g.wants) for g in goals)
    assert {g.patience for g in goals} == {2, 3, 4}


def test_a_second_task_reuses_what_the_bot_holds_or_says_the_new_value(tiny: SimBot) -> None:
    cfg = SimConfig(goal_weights=(("task", 1.0),), p_second=1.0, p_same_value=0.0, p_switch=0, p_correct=0)
    for seed in range(200):
        g = draw_goal(tiny, cfg, random.Random(seed))
        first, second = g.wants[0], g.wants[1]
        if first.task == second.task == "food":  # food keeps its slots: another dish must be said up front
            assert dict(second.values)["dish"] != dict(first.values)["dish"] and "dish" in second.upfront


def test_a_task_succeeds_with_the_goal_values_and_a_confirmation(tiny: SimBot) -> None:
    u = user(tiny, booking())
    assert u.react("utter_ask_party_size", {}) == UserAct("inform", (("party_size", "4"),))
    assert u.react("utter_ask_day", {"party_size": "4"}) == UserAct("inform", (("day", "friday"),))
    assert u.react("utter_confirm_booking", dict(BOOK)) == UserAct("affirm")
    assert u.react("action_book", dict(BOOK)) is None and u.success and u.frustration == 0


def test_wrong_values_are_refused_at_the_confirmation_and_fail_the_action(tiny: SimBot) -> None:
    u = user(tiny, booking())
    assert u.react("utter_confirm_booking", {"party_size": "4", "day": "sunday"}) == UserAct("deny")
    again = u.react("utter_booking_cancelled", {})
    assert again == UserAct("book_table", BOOK) and u.frustration == 1  # says it all again
    wrong = user(tiny, booking())
    assert wrong.react("action_book", {"party_size": "4", "day": "sunday"}) is None
    assert wrong.failed == "wrong_values"


def test_asking_again_after_a_no_costs_patience(tiny: SimBot) -> None:
    u = user(tiny, booking())
    assert u.react("utter_confirm_booking", {"party_size": "4", "day": "sunday"}) == UserAct("deny")
    assert u.react("utter_confirm_booking", {"party_size": "4", "day": "sunday"}) == UserAct("deny")
    assert u.frustration == 1  # "I said no"


def test_a_user_who_changes_their_mind_at_the_confirmation(tiny: SimBot) -> None:
    u = user(tiny, booking(decline=True))
    assert u.react("utter_confirm_booking", dict(BOOK)) == UserAct("deny")  # the right values, and still no
    assert u.react("utter_booking_cancelled", {}) is None and u.success and u.frustration == 0
    ran = user(tiny, booking(decline=True))
    ran.react("utter_confirm_booking", dict(BOOK))
    assert ran.react("action_book", dict(BOOK)) is None and ran.failed == "declined_action_run"


@pytest.mark.parametrize("refuse_all", [False, True])
def test_a_value_the_action_refuses_then_the_right_one(tiny: SimBot, refuse_all: bool) -> None:
    u = user(tiny, booking(refused=("day", "sunday"), refuse_all=refuse_all))
    assert u.react("utter_ask_party_size", {}) == UserAct("inform", (("party_size", "4"),))
    assert u.react("utter_ask_day", {"party_size": "4"}) == UserAct("inform", (("day", "sunday"),))
    believed = {"party_size": "4", "day": "sunday"}
    assert u.react("utter_confirm_booking", believed) == UserAct("affirm")  # the user thinks it right
    first = "party_size" if refuse_all else "day"
    assert u.react("action_book", believed) == UserAct("inform", ((first, dict(BOOK)[first]),))
    assert u.clears == (("party_size", "day") if refuse_all else ("day",)) and not u.done
    if refuse_all:
        assert u.react("utter_ask_day", {"party_size": "4"}) == UserAct("inform", (("day", "friday"),))
    assert u.react("action_book", dict(BOOK)) is None and u.success and u.frustration == 0


def test_the_simulation_reopens_the_wait_for_a_refused_value(tiny: SimBot, trainees: Users) -> None:
    cfg = SimConfig(goal_weights=(("task", 1.0),), p_refused=1.0, p_second=0, p_switch=0, p_correct=0,
                    p_offtopic=0, p_decline=0, p_opener=0, p_closing=0)
    sim = DialogueSimulation(tiny, with_config(trainees, **cfg.__dict__))
    fsm = FSMPolicy(tiny.flows.default_policy)
    refused = [e for e in (sim.run(fsm, 0.0, i) for i in range(100)) if e.goal.wants[0].refused]
    assert refused and all(e.success for e in refused)
    for e in refused:  # the completing action ran twice: refused, then with the right values
        assert e.actions.count(e.goal.wants[0].expects) == 2


def test_handoffs_unwanted_actions_and_patience(tiny: SimBot) -> None:
    h = user(tiny, Want("handoff", "complain", "action_handoff"))
    assert h.react("action_handoff", {}) is None and h.success
    b = user(tiny, booking())
    assert b.react("action_handoff", {}) is None and b.failed == "unwanted_handoff"
    f = user(tiny, Want("task", "order_food", "action_order_food", "food", FOOD))
    assert f.react("action_book", {"party_size": "9", "day": "monday"}) is None
    assert f.failed == "unwanted_action"  # a booking nobody asked for, on values that are not the user's
    p = user(tiny, booking(), patience=1)
    assert p.react("utter_fallback", {}) == UserAct("book_table")  # not understood: says it again
    assert p.react("utter_greet", {}) is None and p.failed == "patience"


def test_a_user_whose_task_was_lost_restates_it(tiny: SimBot) -> None:
    u = user(tiny, booking(upfront=("party_size",)))
    assert u.react("utter_ask_dish", {"party_size": "4"}) == UserAct("book_table", (("party_size", "4"),))
    assert u.frustration == 1


def test_switching_task_midway(tiny: SimBot) -> None:
    u = user(tiny, booking(switch_from="order_food"))
    assert u.last_act == UserAct("order_food")
    assert u.react("utter_ask_dish", {}) == UserAct("book_table")  # "actually, I want a table"
    assert u.react("utter_ask_party_size", {}) == UserAct("inform", (("party_size", "4"),)) and u.frustration == 0


def test_correcting_a_value_at_the_next_answer(tiny: SimBot) -> None:
    u = user(tiny, booking(wrong_first=("party_size", "2")))
    assert u.react("utter_ask_party_size", {}) == UserAct("inform", (("party_size", "2"),))
    fixed = u.react("utter_ask_day", {"party_size": "2"})
    assert fixed == UserAct("inform", (("day", "friday"), ("party_size", "4")))


def test_an_off_topic_question_before_the_answer(tiny: SimBot) -> None:
    side = Want("ask", "opening_hours", "action_answer_kb")
    u = user(tiny, booking(interrupt=side))
    assert u.react("utter_ask_party_size", {}) == UserAct("opening_hours")
    assert u.react("utter_ask_party_size", {}) == UserAct("opening_hours") and u.frustration == 1
    assert u.react("action_answer_kb", {}) == UserAct("inform", (("party_size", "4"),))


def test_from_text_answers_and_cancelling(tiny: SimBot) -> None:
    f = user(tiny, Want("task", "order_food", "action_order_food", "food", FOOD, ("dish",)))
    assert f.react("utter_ask_note", {"dish": "noodles"}) == UserAct("inform", (), (("note", "no peanuts"),))
    c = user(tiny, Want("cancel", "book_table", "utter_cancelled", "booking"))
    assert c.react("utter_ask_party_size", {}) == UserAct("cancel")
    assert c.react("utter_cancelled", {}) is None and c.success


def test_an_opener_then_closing_small_talk(tiny: SimBot) -> None:
    u = user(tiny, Want("ask", "opening_hours", "action_answer_kb"), Want("ask", "goodbye", "utter_goodbye"),
             opener="greet")
    assert u.last_act == UserAct("greet")
    assert u.react("utter_greet", {}) == UserAct("opening_hours")
    assert u.react("action_answer_kb", {}) == UserAct("goodbye")
    assert u.react("utter_goodbye", {}) is None and u.success


def test_closing_small_talk_costs_turns_but_not_the_success(tiny: SimBot) -> None:
    bye = Want("ask", "goodbye", "utter_goodbye", courtesy=True)
    u = user(tiny, Want("ask", "opening_hours", "action_answer_kb"), bye, patience=1)
    assert u.react("action_answer_kb", {}) == UserAct("goodbye")
    assert u.react("utter_fallback", {}) == UserAct("goodbye")
    assert u.react("utter_fallback", {}) is None and u.success and u.failed is None
    rude = user(tiny, Want("ask", "opening_hours", "action_answer_kb"), bye)
    rude.react("action_answer_kb", {})
    assert rude.react("action_handoff", {}) is None and rude.failed == "unwanted_handoff"


@pytest.mark.parametrize("config", [SimConfig(), SimConfig.held_out(),
                                    SimConfig(p_switch=1, p_correct=1, p_offtopic=1, p_second=1, p_opener=1),
                                    SimConfig(p_decline=1, p_refused=1)])
def test_the_fsm_completes_every_goal_without_noise(tiny: SimBot, trainees: Users, config: SimConfig) -> None:
    sim = DialogueSimulation(tiny, with_config(trainees, **config.__dict__))
    fsm = FSMPolicy(tiny.flows.default_policy)
    episodes = [sim.run(fsm, 0.0, i) for i in range(300)]
    failed = [(e.goal, e.actions, e.failure) for e in episodes if not e.success]
    assert not failed, failed[:3]
    noisy = [sim.run(fsm, 0.3, i) for i in range(300)]
    assert 0.5 < sum(e.success for e in noisy) / len(noisy) < 0.97  # noise costs the rules something


def test_same_seed_same_user_whatever_the_policy_did_before(tiny: SimBot, trainees: Users) -> None:
    sim = DialogueSimulation(tiny, trainees)
    fsm = FSMPolicy(tiny.flows.default_policy)
    a = sim.run(fsm, 0.3, 7)
    for i in range(20):
        sim.run(fsm, 0.15, i)
    b = sim.run(fsm, 0.3, 7)
    assert (a.goal, a.actions, a.success, a.reward) == (b.goal, b.actions, b.success, b.reward)


def test_a_definition_with_nothing_to_want_is_refused(tiny: SimBot, trainees: Users) -> None:
    import dataclasses

    empty = dataclasses.replace(tiny.definition, tasks=(), small_talk=(), knowledge=None)  # type: ignore[type-var]
    with pytest.raises(SimulatorError):
        DialogueSimulation(dataclasses.replace(tiny, definition=empty), trainees)


class RunnerUp:
    """Takes the runner-up reading whenever it is offered, the rules' choice otherwise."""

    name = "runner_up"

    def __init__(self, rules: FSMPolicy) -> None:
        self.rules, self.offered = rules, 0

    def choose(self, obs: Observation, allowed: Sequence[str]) -> Decision:
        if obs.runner_up_actions:
            self.offered += 1
            assert set(obs.runner_up_actions) <= set(allowed)
            return Decision(obs.runner_up_actions[0], 0.0, tuple(allowed), self.name)
        return self.rules.choose(obs, allowed)


def test_the_runner_up_reading_is_offered_and_moves_the_flows_as_its_intent(tiny: SimBot, trainees: Users) -> None:
    sim = DialogueSimulation(tiny, trainees)
    second, extra = sim.runner_up("idle", "out_of_scope", {}, frozenset(),
                                  (("out_of_scope", 0.5), ("book_table", 0.3)), sim.allowed("idle", "out_of_scope",
                                                                                           {}, frozenset()), True)
    assert second == "book_table" and extra == ("utter_ask_party_size",)
    assert sim.runner_up("idle", "greet", {}, frozenset(), (("greet", 0.9), ("book_table", 0.05)),
                         ("utter_greet",), False) == (None, ())  # understood: no runner-up
    assert sim.advance("idle", "book_table", {}, frozenset(), "utter_ask_party_size") != "idle"
    taker = RunnerUp(FSMPolicy(tiny.flows.default_policy))
    episodes = [sim.run(taker, 0.3, i) for i in range(200)]
    assert taker.offered > 50 and any(e.success for e in episodes)
    plain = DialogueSimulation(dataclasses.replace(tiny, runner_up=False), trainees)
    fsm = FSMPolicy(tiny.flows.default_policy)
    for i in range(50):  # the rules never take it: their dialogues are the same with or without it
        a, b = sim.run(fsm, 0.3, i), plain.run(fsm, 0.3, i)
        assert (a.actions, a.success) == (b.actions, b.success)


def test_on_a_guess_the_bot_only_asks(tiny: SimBot) -> None:
    assert questions(tiny.definition) == {"utter_ask_party_size", "utter_ask_day", "utter_ask_dish", "utter_ask_note",
                                          "utter_confirm_booking"}

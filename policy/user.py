"""The simulated user: its agenda (the goal's wants in order), what it has said, its patience, and how it reacts to
each action of the bot. See :mod:`policy.simulator` for the rules it plays by."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from policy.botshape import SimBot, TaskLike
from policy.goals import Goal, Want
from policy.noise import UserAct

# -- the user ----------------------------------------------------------------------------------------------------


class SimulatedUser:
    """The agenda: the goal's wants in order, what has been said, patience, and the verdict."""

    def __init__(self, goal: Goal, bot: SimBot) -> None:
        self.goal, self.bot = goal, bot
        d = bot.definition
        self.definition = d
        self.tasks = {t.name: t for t in d.tasks}
        self.by_action = {t.action: t for t in d.tasks}
        self.by_confirm = {t.confirm.ask: t for t in d.tasks if t.confirm}
        self.by_cancelled = {t.confirm.cancelled: t for t in d.tasks if t.confirm and t.confirm.cancelled}
        self.by_ask: dict[str, list[str]] = {}
        for t in d.tasks:
            for s in t.slots:
                names = self.by_ask.setdefault(s.ask, [])
                if s.name not in names:
                    names.append(s.name)
        self.replies = {t.intent: t.reply for t in d.small_talk}
        self.text_slots = {m.slot for m in bot.from_text}
        self.entity_slots = set(bot.entities)
        self.answer_intent = d.answer_intents[0] if d.answer_intents else None
        self.own = ({(s, v) for w in goal.wants for s, v in w.values}
                    | {w.wrong_first for w in goal.wants if w.wrong_first}
                    | {w.refused for w in goal.wants if w.refused})
        self.clears: tuple[str, ...] = ()  # slots the action the bot just ran refused (the simulation clears them)
        self.index = 0
        self.frustration = 0
        self.greeted = goal.opener is None
        self.last_act: UserAct | None = None
        self.success = False
        self.failed: str | None = None
        self._fresh()

    def _fresh(self) -> None:
        """Per-want state."""
        self.said: dict[str, str] = {}
        self.switched = False
        self.wrong_given = False
        self.corrected = False
        self.denied = False
        self.refusal_done = False
        self.cancel_said = False
        self.interrupt = "pending"  # pending | asked | done
        self.pending_slot: str | None = None

    @property
    def done(self) -> bool:
        return self.success or self.failed is not None

    @property
    def want(self) -> Want:
        return self.goal.wants[self.index]

    # -- acts ----------------------------------------------------------------------------------------------------
    def _say(self, act: UserAct) -> UserAct:
        self.last_act = act
        return act

    def _value(self, w: Want, slot: str) -> str:
        if w.wrong_first and w.wrong_first[0] == slot and not self.corrected:
            self.wrong_given = True
            return w.wrong_first[1]
        if w.refused and w.refused[0] == slot and not self.refusal_done:
            return w.refused[1]
        return dict(w.values)[slot]

    def _expected(self, w: Want) -> dict[str, str]:
        """The values the user believes right now: the goal's, with a value the action has not refused yet."""
        values = dict(w.values)
        if w.refused and not self.refusal_done:
            values[w.refused[0]] = w.refused[1]
        return values

    def _carry(self, slot: str, value: str) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        """The value as the NLU can read it (an entity) and as the whole message would be taken (from_text)."""
        ents = ((slot, value),) if slot in self.entity_slots else ()
        texts = ((slot, value),) if slot in self.text_slots else ()
        return ents, texts

    def _request(self, w: Want, everything: bool = False) -> UserAct:
        if w.kind == "task" and w.switch_from and not self.switched:
            return UserAct(w.switch_from)
        if w.kind != "task":
            return UserAct(w.intent)
        given = [s for s, _ in w.values if s in self.entity_slots] if everything else list(w.upfront)
        ents: list[tuple[str, str]] = []
        for slot in given:
            value = self._value(w, slot) if not everything else self._expected(w)[slot]
            self.said[slot] = value
            ents.append((slot, value))
        if everything:
            self.corrected = True  # said again from the start: no slip this time
        return UserAct(w.intent, tuple(ents))

    def _answer(self, w: Want, slot: str) -> UserAct:
        value = self._value(w, slot)
        ents, texts = self._carry(slot, value)
        self.said[slot] = value
        if self.wrong_given and not self.corrected and w.wrong_first and w.wrong_first[0] != slot:
            right = dict(w.values)[w.wrong_first[0]]  # "... and sorry, the order is 10388, not 10383"
            more, _ = self._carry(w.wrong_first[0], right)
            ents = ents + more
            self.said[w.wrong_first[0]] = right
            self.corrected = True
        elif w.wrong_first and w.wrong_first[0] == slot and self.wrong_given and value == dict(w.values)[slot]:
            self.corrected = True
        return UserAct(self.answer_intent or w.intent, tuple(sorted(ents)), texts)

    def first_act(self) -> UserAct:
        if self.goal.opener is not None:
            return self._say(UserAct(self.goal.opener))
        return self._say(self._request(self.want))

    # -- verdicts ------------------------------------------------------------------------------------------------
    def _fail(self, why: str) -> UserAct | None:
        """The dialogue is over, failed (the caller returns this: no next act)."""
        self.failed = why
        return None

    def leave(self, why: str) -> UserAct | None:
        """The user gives up (patience, too many turns): a failure, unless all that is left is closing small talk."""
        if self.index < len(self.goal.wants) and self.want.courtesy:
            self.success = True
            return None
        return self._fail(why)

    def _annoyed(self, restate: bool = False) -> UserAct | None:
        """An unproductive turn: one unit of patience, then the user says it again (a new parse, new noise); with
        ``restate`` (the bot went down another task's path: asked for a value this task does not need, or ran
        another task's action), a task's user says the request again with every value given so far ("no, I want to
        *return* order 10234")."""
        self.frustration += 1
        if self.frustration > self.goal.patience:
            return self.leave("patience")
        w = self.want
        if restate and w.kind == "task" and self.greeted and (not w.switch_from or self.switched):
            given = [s for s, _ in w.values if s in self.entity_slots and (s in self.said or s in w.upfront)]
            values = self._expected(w)
            self.corrected = self.corrected or self.wrong_given  # a slip is put right when saying it all again
            for s in given:
                self.said[s] = values[s]
            return self._say(UserAct(w.intent, tuple((s, values[s]) for s in given)))
        assert self.last_act is not None
        return self._say(self.last_act)

    def _fulfilled(self) -> UserAct | None:
        self.index += 1
        self._fresh()
        if self.index == len(self.goal.wants):
            self.success = True
            return None
        return self._say(self._request(self.want))

    # -- reacting to the bot -------------------------------------------------------------------------------------
    def react(self, action: str, slots: Mapping[str, Any]) -> UserAct | None:
        """The user's next act after the bot's ``action`` (``slots``: the tracker's, as the action saw them);
        None when the dialogue is over (see :attr:`success` and :attr:`failed`)."""
        self.clears = ()
        if self.done:
            return None
        d, w = self.definition, self.want
        if d.handoff and action == d.handoff.action:
            if w.kind == "handoff" and self.greeted:
                return self._fulfilled()
            return self._fail("unwanted_handoff")
        task = self.by_action.get(action)
        if task is not None:
            return self._completed(task, slots)
        if not self.greeted:  # the opener wanted its reply; the user moves on to the request either way
            self.greeted = True
            if action != self.replies.get(self.goal.opener or ""):
                self.frustration += 1
                if self.frustration > self.goal.patience:
                    return self.leave("patience")
            return self._say(self._request(w))
        task = self.by_confirm.get(action)
        if task is not None:
            return self._confirm(task, slots)
        task = self.by_cancelled.get(action)
        if task is not None or (d.cancel is not None and action == d.cancel.reply):
            return self._dropped(action, task)
        asked = self.by_ask.get(action)
        if asked:
            return self._asked(asked)
        last = self.last_act
        if self.interrupt == "asked" and w.interrupt and action == w.interrupt.expects:
            self.interrupt = "done"  # the side question is answered: now the answer the bot asked for
            assert self.pending_slot is not None
            return self._say(self._answer(w, self.pending_slot))
        if w.kind == "ask" and action == w.expects and last is not None and last.intent == w.intent:
            return self._fulfilled()
        return self._annoyed()  # a fallback or a reply that does not help: the user says it again

    def _completed(self, task: TaskLike, slots: Mapping[str, Any]) -> UserAct | None:
        w = self.want
        seen = {s.name: slots.get(s.name) for s in task.slots}
        if w.kind == "task" and w.task == task.name and self.greeted and (not w.switch_from or self.switched):
            if w.decline:
                return self._fail("declined_action_run")
            if w.refused and not self.refusal_done and all(seen[s] == v for s, v in self._expected(w).items()):
                return self._refused(w, task)
            if all(seen[s] == v for s, v in w.values):
                return self._fulfilled()
            return self._fail("wrong_values")
        if all(v is not None and (s, v) in self.own for s, v in seen.items()):
            return self._annoyed(restate=True)  # the user's own data, but not what they asked for now
        return self._fail("unwanted_action")

    def _refused(self, w: Want, task: TaskLike) -> UserAct | None:
        """The action refused the value the user believed right (the simulation clears ``self.clears`` and reopens the
        wait); the user gives the right value of the first cleared slot at once, as a customer answers "that card
        does not match"."""
        assert w.refused is not None
        self.refusal_done = True
        self.clears = tuple(s.name for s in task.slots) if w.refuse_all else (w.refused[0],)
        for slot in self.clears:
            self.said.pop(slot, None)
        return self._say(self._answer(w, self.clears[0]))

    def _confirm(self, task: TaskLike, slots: Mapping[str, Any]) -> UserAct | None:
        w = self.want
        assert task.confirm is not None
        if w.kind == "task" and w.task == task.name and (not w.switch_from or self.switched):
            if self.denied and self._annoyed() is None:  # asked again after saying no
                return None
            if not w.decline and all(slots.get(s) == v for s, v in self._expected(w).items()):
                return self._say(UserAct(task.confirm.yes[0]))
            self.denied = True
            return self._say(UserAct(task.confirm.no[0]))
        if self._annoyed() is None:
            return None
        return self._say(UserAct(task.confirm.no[0]))

    def _dropped(self, action: str, task: TaskLike | None) -> UserAct | None:
        """The open task was dropped (a refused confirmation, or cancelled)."""
        w = self.want
        d = self.definition
        if w.kind == "cancel" and self.cancel_said and d.cancel is not None and action == d.cancel.reply:
            return self._fulfilled()
        if w.kind == "task" and w.decline and self.denied and task is not None and task.name == w.task:
            return self._fulfilled()  # the user said no, and the bot dropped the task
        if self._annoyed() is None:  # a detour, even when the user said no to wrong values
            return None
        self.denied = False
        if w.kind == "task":
            return self._say(self._request(w, everything=True))  # asks again, with every value at once
        return self.last_act

    def _asked(self, slots_asked: Sequence[str]) -> UserAct | None:
        w = self.want
        d = self.definition
        if w.kind == "task" and w.switch_from and not self.switched:
            self.switched = True  # "actually, I want something else"
            return self._say(self._request(w))
        if w.kind == "cancel":
            if not self.cancel_said and d.cancel is not None:
                self.cancel_said = True
                return self._say(UserAct(d.cancel.intents[0]))
            return self._annoyed()
        needed = [s for s in slots_asked if w.kind == "task" and s in dict(w.values)]
        if self.interrupt == "asked":
            return self._annoyed()  # the side question first
        if not needed:
            return self._annoyed(restate=True)
        slot = needed[0]
        if self.interrupt == "pending" and w.interrupt is not None:
            self.interrupt, self.pending_slot = "asked", slot
            return self._say(UserAct(w.interrupt.intent))
        fixing = w.wrong_first is not None and w.wrong_first[0] == slot and self.wrong_given and not self.corrected
        if slot in self.said and not fixing:  # asked again for what was said: a confirmation costs patience
            self.frustration += 1
            if self.frustration > self.goal.patience:
                return self.leave("patience")
        return self._say(self._answer(w, slot))

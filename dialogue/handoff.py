"""The hand-off life cycle's decisions, pure: the clock, the staffing and the conversation come in as values.

A hand-off is a promise to the customer ("a colleague will be with you"), so the bot only makes it when someone can
keep it, and it does not keep a customer waiting for ever:

* **Offline.** When nobody can answer (outside the bot's office hours, or no agent online in the console), the bot
  does not queue the conversation: it says so (the bot's ``utter_handoff_offline`` response: where else to get help,
  when the team is back) and the customer stays with the bot, whose flow returns to its initial state.
* **Time-out.** A conversation waiting longer than ``timeout`` is taken out of the queue at the customer's next
  message, with the same offline response, and that message is answered by the bot.
* **Back to the bot.** While waiting, a message the bot can act on from its initial state (a task or a question, not
  small talk or a misunderstanding) takes the customer back to the bot: the wait ends and the bot answers it.

The engine applies these decisions (:mod:`dialogue.engine`); a ``handoff_end`` event records why a wait ended (or why
one never started), and the store clears ``handoff_status`` from it.

Who counts as staffed is an agent's **presence** (:class:`AgentPresence`): the status they chose in the console
(``online``, ``away`` or ``offline``; remembered with the account) and when their console was last seen. Only an
agent who chose ``online`` *and* whose console was seen within :data:`PRESENCE_TIMEOUT` answers customers: a closed
laptop or a dropped network stops counting on its own, an agent at lunch says so. The same rule picks who a queued
conversation is auto-assigned to (round-robin: the online agent assigned least recently, :func:`round_robin`).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dialogue.errors import DialogueError

OFFLINE_RESPONSE = "utter_handoff_offline"  # the bot's response when a hand-off cannot happen (optional in a domain)
END_OFFLINE, END_TIMEOUT, END_CUSTOMER = "offline", "timeout", "customer"  # handoff_end reasons
DEFAULT_TIMEOUT = dt.timedelta(minutes=15)

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class HandoffConfigError(DialogueError):
    """``office_hours`` in ``bot.yml`` cannot be read (the message names the key and the fix)."""


@dataclass(frozen=True)
class OfficeHours:
    """When the support team works: weekdays (Monday = 0) and one daily interval, in a time zone.

    ``bot.yml``: ``office_hours: {timezone: Asia/Shanghai, days: [mon, tue, wed, thu, fri], hours: "09:00-18:00"}``.
    An interval whose end is before its start runs past midnight (``"22:00-06:00"``).
    """

    timezone: str = "UTC"
    days: frozenset[int] = frozenset(range(7))
    opens: dt.time = dt.time(0, 0)
    closes: dt.time = dt.time(0, 0)  # equal to opens: all day

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> OfficeHours:
        unknown = set(raw) - {"timezone", "days", "hours"}
        if unknown:
            raise HandoffConfigError(f"office_hours: unknown keys {sorted(unknown)} (use timezone, days, hours)")
        timezone = str(raw.get("timezone", "UTC"))
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise HandoffConfigError(f"office_hours.timezone: unknown time zone {timezone!r} (e.g. Asia/Shanghai)") from None
        days_raw = raw.get("days", list(_DAYS))
        if not isinstance(days_raw, list) or not all(str(d).lower()[:3] in _DAYS for d in days_raw):
            raise HandoffConfigError(f"office_hours.days: expected a list of {', '.join(_DAYS)}")
        match = _HOURS_RE.match(str(raw.get("hours", "00:00-00:00")))
        if match is None:
            raise HandoffConfigError('office_hours.hours: expected "HH:MM-HH:MM", e.g. "09:00-18:00"')
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise HandoffConfigError(f"office_hours.hours: {match.group(0).strip()!r} is not a time of day")
        return cls(
            timezone=timezone,
            days=frozenset(_DAYS.index(str(d).lower()[:3]) for d in days_raw),
            opens=dt.time(h1, m1),
            closes=dt.time(0, 0) if h2 == 24 else dt.time(h2, m2),
        )

    def open_at(self, now: dt.datetime) -> bool:
        """Whether ``now`` (timezone-aware) falls in office hours."""
        local = now.astimezone(zoneinfo.ZoneInfo(self.timezone))
        t = local.time().replace(tzinfo=None)
        if self.opens == self.closes:
            return local.weekday() in self.days
        if self.opens < self.closes:
            return local.weekday() in self.days and self.opens <= t < self.closes
        # Past midnight: the evening belongs to today, the small hours to the day before.
        if t >= self.opens:
            return local.weekday() in self.days
        return t < self.closes and (local.weekday() - 1) % 7 in self.days


ONLINE, AWAY, OFFLINE = "online", "away", "offline"
AGENT_STATUSES = (ONLINE, AWAY, OFFLINE)  # what an agent may choose in the console (users.status, migration 0011)
#: A console unseen for longer counts as offline whatever its status says. The console's pulse is every 0.3 s and
#: records presence at most every 15 s; 90 s also covers a background tab whose timers the browser throttles to one
#: a minute (Chrome, after five minutes hidden) without the agent flickering offline.
PRESENCE_TIMEOUT = dt.timedelta(seconds=90)


@dataclass(frozen=True)
class AgentPresence:
    """An agent's chosen ``status`` and the clock of their console: ``last_seen_at`` (any console request, recorded
    at most every few seconds) and ``last_assigned_at`` (the last auto-assignment: the round-robin's order)."""

    username: str
    status: str = ONLINE
    last_seen_at: dt.datetime | None = None
    last_assigned_at: dt.datetime | None = None

    def effective(self, now: dt.datetime, timeout: dt.timedelta = PRESENCE_TIMEOUT) -> str:
        """What colleagues and the bot see at ``now``: the chosen status, or ``offline`` once the console has not
        been seen for ``timeout``."""
        if self.last_seen_at is None or now - self.last_seen_at > timeout:
            return OFFLINE
        return self.status


def round_robin(agents: Sequence[AgentPresence], count: int) -> list[str]:
    """Who the next ``count`` queued conversations go to, in order: the agents (all online) by least recent
    assignment (never assigned first, then by name, so the order is total and every worker computes the same),
    taking turns. The store calls this inside the transaction that writes the assignments."""
    if not agents or count <= 0:
        return []
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    order = sorted(agents, key=lambda a: (a.last_assigned_at or never, a.username))
    return [order[i % len(order)].username for i in range(count)]


@dataclass(frozen=True)
class Staffing:
    """Whether a human can answer now."""

    agents_online: int
    office_open: bool = True

    @property
    def available(self) -> bool:
        return self.office_open and self.agents_online > 0


ALWAYS_STAFFED = Staffing(agents_online=1)
StaffingProbe = Callable[[dt.datetime], Awaitable[Staffing]]


def staffing_probe(count_agents: Callable[[dt.datetime], Awaitable[int]], hours: OfficeHours | None) -> StaffingProbe:
    """A probe that asks the store how many agents are online (``ConversationStore.count_agents_online``: status
    ``online`` and a console seen within :data:`PRESENCE_TIMEOUT`), and only when office hours say the team works."""

    async def probe(now: dt.datetime) -> Staffing:
        if hours is not None and not hours.open_at(now):
            return Staffing(agents_online=0, office_open=False)
        return Staffing(agents_online=await count_agents(now))

    return probe


def fixed_staffing(agents_online: int, office_open: bool = True) -> StaffingProbe:
    """A probe that always answers the same (scenarios and tests say who is online)."""
    staffing = Staffing(agents_online, office_open)

    async def probe(now: dt.datetime) -> Staffing:
        return staffing

    return probe


def wait_expired(handoff_at: dt.datetime | None, now: dt.datetime, timeout: dt.timedelta) -> bool:
    """Whether a conversation queued at ``handoff_at`` has waited longer than ``timeout`` at ``now``."""
    return handoff_at is not None and now - handoff_at > timeout


def offline_responses(available: Container[str], fallback: str) -> list[tuple[str, dict[str, Any]]]:
    """What the bot says when a hand-off cannot happen: the bot's offline response, else its fallback."""
    return [(OFFLINE_RESPONSE if OFFLINE_RESPONSE in available else fallback, {})]

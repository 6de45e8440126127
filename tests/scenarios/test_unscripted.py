"""The unscripted conversations replayed against the real demo bot with the policy it serves: a pass rate per set and
language, not one test each, because they measure how well the bot generalises rather than script it.

* ``scenarios/unscripted/``: written by someone who never read the NLU data; the failures in it guided fixes.
* ``scenarios/heldout/``: written later the same way, by another writer, to measure on text no fix was made for
  (one fix was made after its first measurement; README, "Unscripted conversations"). Stop 28's fixes were made for
  its failures, so it stopped being held out.
* ``scenarios/heldout2/``: written in stop 29 the same way by a third writer; its first replay (57 of 81) found the
  Chinese retrieval's weakness that the word vectors fixed (README), and nothing was fixed for one conversation.
* ``scenarios/heldout3/``: written in stop 30 the same way by a fourth writer; its first replay, on stop 29's code,
  passed 56 of 80 (en 30, zh 26). Stop 30's platform fixes (traditional Chinese, a threshold per language, entities
  no task asks for, English typos, questions about a task's subject) took it to 64; none was made for one of its
  sentences.
* ``scenarios/heldout4/``: written in stop 32 the same way by a fifth writer, told to write as customers do rather than
  around what the bot was known to miss; its first replay, on stop 31's code, passed 53 of 80 (en 28, zh 25). Stop
  32's platform fixes (hand-off readings asked as questions, questions in passing while a reason is awaited, a plain
  goodbye ending the task, the out-of-scope examples as the misunderstood turn's rivals) and the policy retrained on
  them took it to 65 (36, 29); 64 (36, 28) at the stop's end.
* ``scenarios/heldout5/``: 40 conversations (20 en, 20 zh) written in stop 32 by a sixth writer after those fixes, to
  measure them on unseen text: 28 of 40 (en 15, zh 13) with and without them; one fix was then made for one of its
  failures (a wait for a human ends on a task question only when said plainly): 29 (16, 13); then a hand-off asked
  as a question decided by the whole message, and the Chinese question words: 30 (16, 14).
* ``scenarios/heldout6/``: 50 conversations (20 en, 30 zh) written in stop 33 by a seventh writer, Chinese weighted
  because it is the weaker language: 33 of 50 (en 15, zh 18) on stop 32's code; stop 33's fixes (the word vectors'
  common directions out of the Chinese retrieval, a dash between words ending a clause, a task asked for in one clause
  of an unsure message, a hand-off asked for in a statement beside a question, a question that would repeat the last
  answer) took it to 38 (17, 21).

The floors sit below what the bot reaches on the development machine (the NLU and the policy are trained where the
tests run, and differ by machine and by training), so that a regression fails CI; the issue's target is 0.90. How far
two trainings of the same data differ: up to five conversations of a set (the held-out English set passed 37 of 44
with the models of one session and 32 of 44 with the next one's, same code: the NLU read "r u open on sundays" as
goodbye and two shipping questions as complaints; unscripted Chinese 72 and 68 of 79). Each floor was the lower of two
sessions' results less five conversations (unscripted 76 / 82 and 68 / 79, held-out 32 / 44 and 30 / 43). Stop 28's
knowledge and answer rules raised the held-out results to 40 / 44 and 37 / 43 and the unscripted Chinese one to 73 / 79,
measured in one session: those floors are now that result less seven conversations (held-out 33 / 44 and 30 / 43,
unscripted Chinese 66 / 79): a retrained NLU stays above them; a loss of more than seven conversations fails CI.
The second held-out set's floors are stop 29's result less seven as well (33 / 41 and 33 / 40); the third's, stop
30's (35 / 40 and 29 / 40) less seven; the fourth's, stop 32's (36 / 40 and 28 / 40) less seven; the fifth's, half
the size, stop 32's (16 / 20 and 13 / 20) less four; the sixth's, stop 33's (17 / 20 and 20 / 30; 21 at the stop's end) less four and five.
The rules themselves are tested one by one in ``tests/dialogue/``."""

from __future__ import annotations

from typing import Any

import pytest

from dialogue.scenarios import Scenario, run_scenario
from tests.conftest import SCENARIOS

FLOOR = {("unscripted", "en"): 0.85, ("unscripted", "zh"): 0.83, ("heldout", "en"): 0.75, ("heldout", "zh"): 0.69,
         ("heldout2", "en"): 0.63, ("heldout2", "zh"): 0.65, ("heldout3", "en"): 0.70, ("heldout3", "zh"): 0.55,
         ("heldout4", "en"): 0.72, ("heldout4", "zh"): 0.52,
         ("heldout5", "en"): 0.60, ("heldout5", "zh"): 0.45, ("heldout6", "en"): 0.65, ("heldout6", "zh"): 0.50}


def files(name: str) -> list[Any]:
    return sorted((SCENARIOS / name).glob("*.yml"))


@pytest.mark.parametrize(("name", "least"), [("unscripted", 50), ("heldout", 40), ("heldout2", 40),
                                                ("heldout3", 40), ("heldout4", 40), ("heldout5", 20),
                                                ("heldout6", 20)])
def test_the_set_covers_both_languages(name: str, least: int) -> None:
    languages = [Scenario.load(p).language for p in files(name)]
    assert languages.count("en") >= least and languages.count("zh") >= least


@pytest.mark.parametrize(("name", "language"), sorted(FLOOR))
async def test_pass_rate(shop: Any, name: str, language: str) -> None:
    scenarios = [s for s in map(Scenario.load, files(name)) if s.language == language]
    results = [await run_scenario(shop.engine, s) for s in scenarios]
    failed = [r for r in results if not r.passed]
    rate = 1 - len(failed) / len(results)
    floor = FLOOR[(name, language)]
    assert rate >= floor, f"{rate:.3f} < {floor}\n" + "\n".join(r.describe() for r in failed)

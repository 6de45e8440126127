"""load_stories / story_kinds: every Rasa step type, inline annotations, `or`, checkpoints, rules, errors, real files."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dialogue.rasa.stories import (
    ANY_VALUE,
    ActionStep,
    EntityValue,
    LoopStep,
    SlotStep,
    Story,
    StoryError,
    UserStep,
    load_stories,
    parse_annotations,
    story_kinds,
)


@pytest.fixture
def write(tmp_path: Path):
    """Write a dedented YAML file into tmp_path and return its path."""

    def _write(text: str, name: str = "stories.yml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


def one_story(steps_yaml: str) -> str:
    """A stories file holding one story whose steps are ``steps_yaml`` (written at column 0)."""
    return 'version: "3.1"\nstories:\n- story: s\n  steps:\n' + textwrap.indent(textwrap.dedent(steps_yaml), "  ")


def by_name(stories: list[Story]) -> dict[str, Story]:
    return {s.name: s for s in stories}


# ------------------------------------------------------------------------------------------------------ step types


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ("- intent: greet\n", UserStep("greet")),
        ("- intent: /greet\n", UserStep("greet")),
        ("- intent: yes\n", UserStep("yes")),  # a name stays the written text, not YAML's boolean
        ("- intent: faq/ask_hours\n", UserStep("faq/ask_hours")),
        ("- intent: greet\n  user: hello there\n", UserStep("greet", "hello there")),
        ("- user: |\n    hello there\n", UserStep("", "hello there")),
        ("- intent: ''\n  user: hi\n", UserStep("", "hi")),
        ("- intent: inform\n  entities:\n  - city: Berlin\n",
         UserStep("inform", None, (EntityValue("city", "Berlin"),))),
        ("- intent: inform\n  entities:\n  - entity: city\n    value: Paris\n    role: to\n    group: g1\n",
         UserStep("inform", None, (EntityValue("city", "Paris", "to", "g1"),))),
        ("- intent: inform\n  entities:\n  - city: Rome\n    role: from\n",
         UserStep("inform", None, (EntityValue("city", "Rome", "from"),))),
        ("- intent: inform\n  entities:\n  - city\n", UserStep("inform", None, (EntityValue("city", ANY_VALUE),))),
        ("- intent: inform\n  entities:\n  - entity: city\n", UserStep("inform", None, (EntityValue("city", ANY_VALUE),))),
        ("- intent: inform\n  entities:\n  - count: 2\n", UserStep("inform", None, (EntityValue("count", 2),))),
        ("- action: utter_greet\n", ActionStep("utter_greet")),
        ("- bot: |\n    Hi! How can I help?\n", ActionStep("", "Hi! How can I help?")),
        ("- active_loop: order_form\n", LoopStep("order_form")),
        ("- active_loop: null\n", LoopStep(None)),
        ("- active_loop: ~\n", LoopStep(None)),
        ("- slot_was_set:\n  - city: Berlin\n  - confirmed: yes\n  - mode: on\n  - n: 3\n  - gone: null\n  - seen\n",
         SlotStep((("city", "Berlin"), ("confirmed", True), ("mode", True), ("n", 3), ("gone", None),
                   ("seen", ANY_VALUE)))),
        ("- slot_was_set:\n  - answer: 'no'\n", SlotStep((("answer", "no"),))),
        ("- slot_was_set:\n    city: Berlin\n", SlotStep((("city", "Berlin"),))),  # mapping instead of a list
    ],
)
def test_each_step_type(write, steps: str, expected: Any) -> None:
    path = write(one_story(steps + "- action: utter_done\n"))
    [story] = load_stories([path], "story")
    assert story.steps == (expected, ActionStep("utter_done"))
    assert story.kind == "story" and story.source == f"{path}:3"


def test_metadata_and_unknown_story_keys_are_ignored(write) -> None:
    path = write("""
        stories:
        - story: with metadata
          metadata: {author: me}
          steps:
          - metadata: {note: x}
          - intent: greet
            metadata: {a: 1}
          - action: utter_greet
    """)
    [story] = load_stories([path], "story")
    assert story.steps == (UserStep("greet"), ActionStep("utter_greet"))


def test_version_is_optional_and_other_keys_give_nothing(write, tmp_path: Path) -> None:
    nlu = write("nlu:\n- intent: greet\n  examples: |\n    - hi\n", "nlu.yml")
    rules = write("rules:\n- rule: r\n  steps:\n  - intent: greet\n  - action: utter_greet\n", "rules.yml")
    empty = write("", "empty.yml")
    assert load_stories([nlu, rules, empty], "story") == []
    assert load_stories([nlu, empty], "rule") == []
    assert [s.name for s in load_stories([rules], "rule")] == ["r"]


def test_story_without_steps_is_skipped_with_a_warning(write, caplog: pytest.LogCaptureFixture) -> None:
    path = write("stories:\n- story: empty\n  steps: []\n- story: none\n- story: ok\n  steps:\n  - intent: hi\n")
    with caplog.at_level(logging.WARNING):
        assert [s.name for s in load_stories([path], "story")] == ["ok"]
    assert "no steps" in caplog.text


def test_folder_reads_its_yaml_files(write, tmp_path: Path) -> None:
    write("stories:\n- story: a\n  steps:\n  - intent: hi\n", "data/a.yml")
    write("stories:\n- story: b\n  steps:\n  - intent: hi\n", "data/sub/b.yaml")
    write("nlu: []\n", "data/nlu.yml")
    assert [s.name for s in load_stories([tmp_path / "data"], "story")] == ["a", "b"]


# --------------------------------------------------------------------------------------------- end-to-end test texts


@pytest.mark.parametrize(
    ("text", "plain", "entities"),
    [
        ("fly to [Berlin](city)", "fly to Berlin", (EntityValue("city", "Berlin"),)),
        ("a [medium](size:M) shirt", "a medium shirt", (EntityValue("size", "M"),)),
        ('from [NYC]{"entity": "city", "role": "from", "group": "1", "value": "New York"} please',
         "from NYC please", (EntityValue("city", "New York", "from", "1"),)),
        ('to [LA]{"entity": "city"}', "to LA", (EntityValue("city", "LA"),)),
        ('[Bo][{"entity": "name"}, {"entity": "person", "role": "x"}]', "Bo",
         (EntityValue("name", "Bo"), EntityValue("person", "Bo", "x"))),
        ("[a](x) and [b](y)", "a and b", (EntityValue("x", "a"), EntityValue("y", "b"))),
        ("no annotations [here]", "no annotations [here]", ()),
    ],
)
def test_parse_annotations(text: str, plain: str, entities: tuple[EntityValue, ...]) -> None:
    assert parse_annotations(text) == (plain, entities)


@pytest.mark.parametrize("bad", ['[x]{"role": "r"}', "[x]{not json}", "[x]( )"])
def test_parse_annotations_rejects_bad_ones(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_annotations(bad)


def test_test_story_annotations_are_read_into_steps(write) -> None:
    path = write("""
        stories:
        - story: e2e
          steps:
          - user: |
              i need [health](insurance_type) insurance
            intent: get_a_quote
          - action: quote_form
          - user: |-
              from [NYC]{"entity": "city", "role": "from"} to [LA](city:Los Angeles)
            intent: inform
          - user: "for [2](count) people"
            intent: inform
            entities:
            - count: 2
          - user: '/inform{"city": "Paris"}'
          - bot: Done.
    """, "tests/test_stories.yml")
    [story] = load_stories([path], "test")
    assert story.kind == "test"
    assert story.steps == (
        UserStep("get_a_quote", "i need health insurance", (EntityValue("insurance_type", "health"),)),
        ActionStep("quote_form"),
        UserStep("inform", "from NYC to LA", (EntityValue("city", "NYC", "from"), EntityValue("city", "Los Angeles"))),
        UserStep("inform", "for 2 people", (EntityValue("count", 2),)),  # the `entities:` list wins
        UserStep("inform", '/inform{"city": "Paris"}', (EntityValue("city", "Paris"),)),
        ActionStep("", "Done."),
    )


# ------------------------------------------------------------------------------------------------------------- or


def test_or_with_intents(write) -> None:
    path = write(one_story("""
        - intent: order
        - action: order_form
        - or:
          - intent: deny
          - intent: stop
            entities:
            - reason: bored
        - action: utter_bye
    """))
    stories = load_stories([path], "story")
    assert [s.name for s in stories] == ["s (or 1)", "s (or 2)"]
    assert [s.steps[2] for s in stories] == [UserStep("deny"), UserStep("stop", None, (EntityValue("reason", "bored"),))]
    assert all(s.steps[3] == ActionStep("utter_bye") and s.source == f"{path}:3" for s in stories)


def test_or_with_slots_multiplies_with_other_ors(write) -> None:
    path = write(one_story("""
        - or:
          - intent: a
          - intent: b
        - action: utter_x
        - or:
          - slot_was_set:
            - confirmed: true
          - slot_was_set:
            - confirmed: false
            - other
    """))
    stories = load_stories([path], "story")
    assert len(stories) == 6  # 2 intents x 3 slots (each slot of an `or` item is its own alternative, as in Rasa)
    assert {(s.steps[0], s.steps[2]) for s in stories} == {
        (UserStep(i), SlotStep(((slot, v),)))
        for i in ("a", "b") for slot, v in (("confirmed", True), ("confirmed", False), ("other", ANY_VALUE))
    }
    assert len({s.name for s in stories}) == 6


# ------------------------------------------------------------------------------------------------------ checkpoints


def test_checkpoint_join_and_fan_out(write) -> None:
    path = write("""
        stories:
        - story: greet
          steps:
          - intent: greet
          - action: utter_greet
          - checkpoint: greeted
        - story: happy
          steps:
          - checkpoint: greeted
          - intent: mood_great
          - action: utter_happy
        - story: sad
          steps:
          - checkpoint: greeted
          - intent: mood_sad
          - action: utter_cheer_up
    """)
    stories = by_name(load_stories([path], "story"))
    assert set(stories) == {"greet > happy", "greet > sad"}  # happy/sad are not stories on their own
    assert stories["greet > happy"].steps == (
        UserStep("greet"), ActionStep("utter_greet"), UserStep("mood_great"), ActionStep("utter_happy"))
    assert stories["greet > sad"].source == f"{path}:2"


def test_checkpoints_join_across_files(write) -> None:
    a = write("stories:\n- story: a\n  steps:\n  - intent: hi\n  - checkpoint: c\n", "a.yml")
    b = write("stories:\n- story: b\n  steps:\n  - checkpoint: c\n  - action: utter_hi\n", "b.yml")
    [story] = load_stories([a, b], "story")
    assert story.name == "a > b" and story.steps == (UserStep("hi"), ActionStep("utter_hi"))


def test_checkpoint_in_the_middle_splits_the_story(write) -> None:
    path = write("""
        stories:
        - story: main
          steps:
          - intent: start
          - checkpoint: mid
          - action: utter_main
        - story: side
          steps:
          - checkpoint: mid
          - action: utter_side
    """)
    stories = by_name(load_stories([path], "story"))
    assert set(stories) == {"main", "main > side"}
    assert stories["main"].steps == (UserStep("start"), ActionStep("utter_main"))
    assert stories["main > side"].steps == (UserStep("start"), ActionStep("utter_side"))


def test_unreached_start_checkpoint_and_unused_end_checkpoint(write) -> None:
    path = write("""
        stories:
        - story: orphan
          steps:
          - checkpoint: nobody_ends_here
          - intent: hi
        - story: dangling
          steps:
          - intent: bye
          - checkpoint: nobody_starts_here
    """)
    assert [(s.name, s.steps) for s in load_stories([path], "story")] == [
        ("orphan", (UserStep("hi"),)), ("dangling", (UserStep("bye"),))]


def test_checkpoint_cycle_is_cut(write) -> None:
    path = write("""
        stories:
        - story: entry
          steps:
          - intent: hi
          - checkpoint: loop
        - story: again
          steps:
          - checkpoint: loop
          - intent: more
          - action: utter_more
          - checkpoint: loop
        - story: self
          steps:
          - checkpoint: self_loop
          - action: utter_self
          - checkpoint: self_loop
    """)
    stories = load_stories([path], "story")
    names = [s.name for s in stories]
    assert names == ["entry > again"]  # `loop` used once per path; `self` is only reachable through itself
    assert stories[0].steps == (UserStep("hi"), UserStep("more"), ActionStep("utter_more"))


def test_expansion_is_capped_fairly(write, caplog: pytest.LogCaptureFixture) -> None:
    one_or = "  - or:\n" + "".join(f"    - intent: i{k}\n" for k in range(10))
    path = write("stories:\n- story: big\n  steps:\n" + one_or * 4 + "- story: small\n  steps:\n  - intent: hi\n")
    with caplog.at_level(logging.WARNING):
        stories = load_stories([path], "story", max_stories=50)
    assert len(stories) == 50
    assert "small" in {s.name for s in stories}  # an exploding story does not starve the others
    assert "'big'" in caplog.text
    assert len(load_stories([path], "story")) == 1000


# ------------------------------------------------------------------------------------------------------------ rules


def test_rule_fields(write) -> None:
    path = write("""
        version: "2.0"
        rules:
        - rule: welcome
          conversation_start: true
          steps:
          - intent: greet
          - action: utter_welcome
        - rule: submit
          condition:
          - active_loop: order_form
          - slot_was_set:
            - requested_slot: null
          steps:
          - action: order_form
          - active_loop: null
          - action: utter_submit
          wait_for_user_input: false
        - rule: plain
          steps:
          - intent: bye
          - action: utter_bye
    """, "rules.yml")
    rules = by_name(load_stories([path], "rule"))
    assert rules["welcome"].conversation_start and rules["welcome"].wait_for_user_input
    assert rules["welcome"].kind == "rule" and rules["welcome"].source == f"{path}:3"
    assert rules["submit"].condition == (LoopStep("order_form"), SlotStep((("requested_slot", None),)))
    assert not rules["submit"].wait_for_user_input and not rules["submit"].conversation_start
    assert rules["plain"].condition == () and rules["plain"].wait_for_user_input
    assert load_stories([path], "story") == []


def test_rule_with_or(write) -> None:
    path = write("rules:\n- rule: r\n  steps:\n  - or:\n    - intent: a\n    - intent: b\n  - action: utter_x\n")
    assert [s.name for s in load_stories([path], "rule")] == ["r (or 1)", "r (or 2)"]


# ----------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        (one_story("- intent: hi\n- foo: bar\n"), 6, "unknown step"),
        (one_story("- {}\n"), 5, "unknown step"),
        (one_story("- greet\n"), 5, "mapping"),
        ("stories:\n- story: s\n  steps: not a list\n", 3, "must be a list"),
        ("stories:\n- story: s\n  steps:\n  - intent: [a\n", 5, "invalid YAML"),
        ("stories:\n  - story: s\n   steps: []\n", 3, "invalid YAML"),
        ("stories: {a: 1}\n", 1, "must be a list"),
        ("stories:\n- steps:\n  - intent: hi\n", 2, "needs a 'story:' name"),
        ("stories:\n- rule: r\n  steps:\n  - intent: hi\n", 2, "rules belong under 'rules:'"),
        (one_story("- or:\n  - action: x\n"), 6, "'or' item"),
        (one_story("- or: []\n"), 5, "at least one alternative"),
        (one_story("- action:\n"), 5, "cannot be empty"),
        (one_story("- checkpoint: [a]\n"), 5, "non-empty name"),
        (one_story("- slot_was_set: []\n"), 5, "at least one slot"),
        (one_story("- intent: hi\n  entities: {a: 1}\n"), 6, "must be a list"),
        (one_story('- user: "[x]{bad json}"\n  intent: hi\n'), 5, "bad JSON"),
        (one_story("- intent:\n"), 5, "needs an 'intent' or a 'user' text"),
        ("- just a list\n", 1, "top level must be a mapping"),
    ],
)
def test_errors_name_file_and_line(write, text: str, line: int, match: str) -> None:
    path = write(text)
    with pytest.raises(StoryError, match=match) as info:
        load_stories([path], "story")
    assert str(info.value).startswith(f"{path}:{line}:")


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ("rules:\n- rule: r\n  conversation_start: maybe\n  steps:\n  - intent: hi\n", 3, "true or false"),
        ("rules:\n- rule: r\n  condition:\n  - checkpoint: c\n  steps:\n  - intent: hi\n", 4, "condition"),
        ("rules:\n- rule: r\n  condition: x\n  steps:\n  - intent: hi\n", 3, "must be a list"),
    ],
)
def test_rule_errors(write, text: str, line: int, match: str) -> None:
    path = write(text, "rules.yml")
    with pytest.raises(StoryError, match=match) as info:
        load_stories([path], "rule")
    assert str(info.value).startswith(f"{path}:{line}:")


def test_unreadable_files(write, tmp_path: Path) -> None:
    with pytest.raises(StoryError, match="cannot read"):
        load_stories([tmp_path / "missing.yml"], "story")
    with pytest.raises(StoryError, match="Markdown"):
        load_stories([write("## story\n* greet\n", "stories.md")], "story")
    with pytest.raises(ValueError):
        load_stories([], "tests")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------ story_kinds


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("version: '3.1'\nnlu:\n- intent: hi\n  examples: '- hi'\n", {"nlu"}),
        ("stories: []\nrules: []\n", {"stories", "rules"}),
        ("nlu:\nstories:\n- story: s\n  steps: [{intent: hi}]\n", {"nlu", "stories"}),
        ("responses: {}\n", set()),
        ("", set()),
        ("- a list\n", set()),
    ],
)
def test_story_kinds(write, text: str, kinds: set[str]) -> None:
    assert story_kinds(write(text)) == kinds


def test_story_kinds_rejects_bad_yaml(write) -> None:
    path = write("stories: [\n")
    with pytest.raises(StoryError, match=f"^{path}:"):
        story_kinds(path)


# ------------------------------------------------------------------------------------------------------- real files


def _real_projects(shared: Path) -> list[Path]:
    root = shared / "rasa_projects"
    return sorted(p.parent.parent for p in root.glob("**/tests/test_stories.yml")) if root.is_dir() else []


def test_real_projects_load(shared_data: Path) -> None:
    projects = _real_projects(shared_data)
    if not projects:
        pytest.skip("no Rasa projects under the shared data")
    assert len(projects) >= 6
    for project in projects:
        tests = load_stories([project / "tests" / "test_stories.yml"], "test")
        assert tests and all(s.kind == "test" and s.steps for s in tests)
        assert any(isinstance(step, UserStep) and step.text for s in tests for step in s.steps)
        assert not any(isinstance(step, UserStep) and step.text and step.text.endswith("\n")
                       for s in tests for step in s.steps)
        for name, kind in (("stories.yml", "story"), ("rules.yml", "rule")):
            if (project / "data" / name).is_file():
                assert load_stories([project / "data" / name], kind)  # type: ignore[arg-type]
        kinds = {p.name: story_kinds(p) for p in (project / "data").glob("*.yml")}
        assert kinds.get("stories.yml") == {"stories"} and kinds.get("rules.yml") == {"rules"}

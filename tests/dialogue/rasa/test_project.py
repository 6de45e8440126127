"""Reading Rasa project folders: config, endpoints, a domain over one or several files, 2.x and 3.x slot mappings,
data files, and the list of what Kefu does not run. Small projects are written in tmp_path; the real projects under
the shared data folder are read as published."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from dialogue.rasa.project import (
    Intent,
    MappingCondition,
    RasaProject,
    RasaProjectError,
    SlotMapping,
    Unsupported,
    load_project,
    read_yaml,
)
from tests.conftest import SHARED_DATA

RASA_PROJECTS = SHARED_DATA / "rasa_projects"

Write = Callable[[dict[str, str]], Path]

DOMAIN_3X = """
version: "3.1"
session_config:
  session_expiration_time: 30
  carry_over_slots_to_new_session: false
intents:
- greet
- inform:
    use_entities: [size]
- chitchat:
    use_entities: false
- stop:
    ignore_entities: [size]
entities:
- size
- city:
    roles: [from, to]
slots:
  size:
    type: categorical
    values: [small, large]
    mappings:
    - type: from_entity
      entity: size
      intent: inform
      conditions:
      - active_loop: size_form
        requested_slot: size
    - type: from_intent
      intent: [affirm]
      value: small
      conditions:
      - active_loop: null
  origin:
    type: text
    influence_conversation: false
    mappings:
    - type: from_entity
      entity: city
      role: from
    - type: from_text
      not_intent: stop
    - type: from_trigger_intent
      intent: order
      value: pickup
  size_checked:
    type: any
    initial_value: false
    mappings:
    - type: custom
      action: validate_size_form
forms:
  size_form:
    ignored_intents: [chitchat]
    required_slots:
    - size
    - origin
responses:
  utter_greet:
  - text: Hi!
    buttons:
    - title: Order
      payload: /order
  - text: Hello {origin}
    condition:
    - type: slot
      name: origin
      value: Paris
  utter_ask_size:
  - text: Which size?
actions:
- action_say_size
- validate_size_form:
    send_domain: true
- utter_greet
- size_form
"""


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """Write the files of a Rasa project (relative path -> text, dedented) into tmp_path; returns the root."""

    def _write(files: dict[str, str]) -> Path:
        for name, text in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return tmp_path

    return _write


def mappings_of(project: RasaProject, slot: str) -> list[tuple[str, str | None, tuple[MappingCondition, ...]]]:
    return [(m.type, m.entity, m.conditions) for m in project.slots[slot].mappings]


def keys_of(project: RasaProject) -> set[str]:
    return {u.key for u in project.unsupported}


# ------------------------------------------------------------------------------------------------- a 3.x project


@pytest.fixture
def project_3x(write: Write) -> RasaProject:
    root = write({
        "domain.yml": DOMAIN_3X,
        "config.yml": """
            language: en
            pipeline:
            - name: WhitespaceTokenizer
            - name: DIETClassifier
              epochs: 100
            - name: FallbackClassifier
              threshold: 0.55
              ambiguity_threshold: 0.05
            policies:
            - name: MemoizationPolicy
              max_history: 4
            - name: TEDPolicy
            - name: UnexpecTEDIntentPolicy
            - name: RulePolicy
              core_fallback_threshold: 0.4
              core_fallback_action_name: action_my_fallback
        """,
        "endpoints.yml": """
            action_endpoint:
              url: "http://actions:5055/webhook"
        """,
        "data/nlu.yml": "version: '3.1'\nnlu:\n- intent: greet\n  examples: |\n    - hi\n",
        "data/core/stories.yml": "stories:\n- story: s\n  steps:\n  - intent: greet\n  - action: utter_greet\n",
        "data/core/mixed.yaml": "rules:\n- rule: r\n  steps:\n  - intent: greet\n  - action: utter_greet\n"
                                  "stories:\n- story: t\n  steps:\n  - intent: greet\n",
        "data/empty.yml": "",
        "data/lookup.txt": "Paris\n",
        "tests/test_stories.yml": "stories:\n- story: t\n  steps:\n  - user: hi\n    intent: greet\n",
        "tests/conftest_data.yml": "- not a story file\n",
        "actions/actions.py": "",
        "actions/__init__.py": "",
    })
    return load_project(root)


def test_3x_domain_is_read_into_records(project_3x: RasaProject) -> None:
    p = project_3x
    assert p.version == "3.1" and p.language == "en"
    assert p.entities == ("size", "city")
    assert p.intents["greet"] == Intent("greet")
    assert p.forms["size_form"].required_slots == ("size", "origin")
    assert p.forms["size_form"].ignored_intents == ("chitchat",)
    assert p.form_slots == {"size", "origin"}
    size = p.slots["size"]
    assert size.type == "categorical" and size.values == ("small", "large") and size.influence_conversation
    assert size.mappings == (
        SlotMapping("from_entity", entity="size", intent=("inform",),
                    conditions=(MappingCondition("size_form", "size"),)),
        SlotMapping("from_intent", intent=("affirm",), value="small", conditions=(MappingCondition(None),)),
    )
    origin = p.slots["origin"]
    assert not origin.influence_conversation
    assert origin.mappings == (
        SlotMapping("from_entity", entity="city", role="from"),
        SlotMapping("from_text", not_intent=("stop",)),
        SlotMapping("from_trigger_intent", intent=("order",), value="pickup"),
    )
    checked = p.slots["size_checked"]
    assert checked.type == "any" and not checked.influence_conversation and checked.initial_value is False
    assert checked.mappings == (SlotMapping("custom", action="validate_size_form"),)
    assert p.session_config.session_expiration_time == 30.0
    assert not p.session_config.carry_over_slots_to_new_session


def test_3x_responses_and_actions(project_3x: RasaProject) -> None:
    greet = project_3x.responses["utter_greet"]
    assert len(greet) == 2 and greet[0]["buttons"][0]["payload"] == "/order"
    assert greet[1]["condition"] == [{"type": "slot", "name": "origin", "value": "Paris"}]
    # responses and forms listed under `actions:` are not custom actions
    assert project_3x.actions == ("action_say_size", "validate_size_form")


def test_3x_config_endpoints_and_files(project_3x: RasaProject) -> None:
    p = project_3x
    assert (p.fallback_threshold, p.ambiguity_threshold) == (0.55, 0.05)
    assert (p.core_fallback_threshold, p.core_fallback_action) == (0.4, "action_my_fallback")
    assert (p.max_history, p.augmented_memoization) == (4, False)
    assert p.action_endpoint == "http://actions:5055/webhook"
    assert p.actions_package == p.root / "actions"
    assert [f.name for f in p.nlu_files] == ["nlu.yml"]
    assert [f.name for f in p.story_files] == ["mixed.yaml", "stories.yml"]
    assert [f.name for f in p.rule_files] == ["mixed.yaml"]
    assert [f.name for f in p.test_files] == ["test_stories.yml"]
    assert p.raw_config["pipeline"][1]["epochs"] == 100
    assert p.unsupported == ()  # TED, UnexpecTED and the NLU components are replaced silently


# ------------------------------------------------------------------------------------------------- 2.x projects

FORM_20 = """
forms:
  order_form:
    size:
    - type: from_entity
      entity: size
    - type: from_text
      not_intent: stop
    confirm:
    - type: from_intent
      intent: affirm
      value: yes
    - type: from_intent
      intent: deny
      value: no
    channel:
    - type: from_trigger_intent
      intent: order_online
      value: web
"""
FORM_2X = """
forms:
  order_form:
    ignored_intents: chitchat
    required_slots:
      size:
      - type: from_entity
        entity: size
      - type: from_text
        not_intent: stop
      confirm:
      - type: from_intent
        intent: affirm
        value: yes
      - type: from_intent
        intent: deny
        value: no
      channel:
      - type: from_trigger_intent
        intent: order_online
        value: web
"""
DOMAIN_2X = """
version: "2.0"
intents: [order_online, affirm, deny, stop, chitchat]
entities: [size, city]
slots:
  size:
    type: text
  confirm:
    type: bool
  channel:
    type: unfeaturized
  city:
    type: text
  note:
    type: text
    auto_fill: false
"""


@pytest.mark.parametrize("forms", [FORM_20, FORM_2X], ids=["2.0-slots-under-form", "2.x-required_slots-mapping"])
def test_2x_form_mappings_become_slot_mappings_with_conditions(write: Write, forms: str) -> None:
    """from_entity / from_trigger_intent: while the form is active; from_text / from_intent: only when asked for."""
    project = load_project(write({"domain.yml": DOMAIN_2X + forms}))
    loop = MappingCondition("order_form")
    assert project.forms["order_form"].required_slots == ("size", "confirm", "channel")
    assert project.slots["size"].mappings == (
        SlotMapping("from_entity", entity="size", conditions=(loop,)),
        SlotMapping("from_text", not_intent=("stop",), conditions=(MappingCondition("order_form", "size"),)),
        SlotMapping("from_entity", entity="size"),  # 2.x auto_fill: the slot is named after an entity
    )
    asked = MappingCondition("order_form", "confirm")
    assert project.slots["confirm"].mappings == (
        SlotMapping("from_intent", intent=("affirm",), value="yes", conditions=(asked,)),  # YAML 1.2: "yes" is text
        SlotMapping("from_intent", intent=("deny",), value="no", conditions=(asked,)),
    )
    assert project.slots["channel"].mappings == (
        SlotMapping("from_trigger_intent", intent=("order_online",), value="web", conditions=(loop,)),
    )
    assert project.slots["channel"].type == "any" and not project.slots["channel"].influence_conversation
    if forms is FORM_2X:
        assert project.forms["order_form"].ignored_intents == ("chitchat",)


def test_2x_auto_fill(write: Write) -> None:
    project = load_project(write({"domain.yml": DOMAIN_2X + FORM_2X}))
    assert project.slots["city"].mappings == (SlotMapping("from_entity", entity="city"),)  # auto-filled, no form
    assert project.slots["note"].mappings == ()  # auto_fill: false; and no entity `note` anyway


def test_2x_auto_fill_off_for_the_whole_domain(write: Write) -> None:
    domain = DOMAIN_2X + "config:\n  store_entities_as_slots: false\n"
    assert load_project(write({"domain.yml": domain})).slots["city"].mappings == ()


def test_3x_slot_without_mappings_is_not_auto_filled(write: Write) -> None:
    domain = DOMAIN_2X.replace('version: "2.0"', 'version: "3.1"').replace("    auto_fill: false\n", "")
    assert load_project(write({"domain.yml": domain})).slots["city"].mappings == ()


@pytest.mark.parametrize(("domain_version", "data_version", "auto_filled"), [
    ("", "2.0", True),  # no domain version: the data files' says 2.x
    ("", "", True),  # no version anywhere: the 2.x form shape says 2.x
    ("", "3.1", False),
])
def test_rasa_major_version_decides_auto_fill(write: Write, domain_version: str, data_version: str,
                                              auto_filled: bool) -> None:
    domain = DOMAIN_2X.replace('version: "2.0"\n', domain_version) + FORM_2X
    nlu = (f'version: "{data_version}"\n' if data_version else "") + "nlu:\n- intent: stop\n  examples: '- stop'\n"
    project = load_project(write({"domain.yml": domain, "data/nlu.yml": nlu}))
    assert (SlotMapping("from_entity", entity="city") in project.slots["city"].mappings) is auto_filled


def test_2x_mapping_shared_by_two_forms_gets_both_conditions(write: Write) -> None:
    domain = DOMAIN_2X + """
forms:
  a_form:
    required_slots:
      size:
      - type: from_entity
        entity: size
      - type: from_text
  b_form:
    required_slots:
      size:
      - type: from_entity
        entity: size
"""
    size = load_project(write({"domain.yml": domain})).slots["size"]
    assert size.mappings[0] == SlotMapping(
        "from_entity", entity="size", conditions=(MappingCondition("a_form"), MappingCondition("b_form")))
    assert size.mappings[1] == SlotMapping("from_text", conditions=(MappingCondition("a_form", "size"),))


def test_2x_form_slot_not_declared_is_listed(write: Write) -> None:
    domain = DOMAIN_2X + "forms:\n  f:\n    required_slots:\n      phone:\n      - type: from_text\n"
    project = load_project(write({"domain.yml": domain}))
    assert project.slots["phone"].type == "any"
    assert project.slots["phone"].mappings == (SlotMapping("from_text", conditions=(MappingCondition("f", "phone"),)),)
    assert "forms.f.required_slots.phone" in keys_of(project)


def test_1x_form_list(write: Write) -> None:
    project = load_project(write({"domain.yml": "intents: [greet]\nforms:\n- booking_form\n"}))
    assert project.forms["booking_form"].required_slots == ()
    assert "forms.booking_form" in keys_of(project)


# ------------------------------------------------------------------------------------------------- split domain


def test_domain_directory_is_merged(write: Write) -> None:
    root = write({
        "domain/intents.yml": "version: '3.1'\nintents:\n- greet\n- inform:\n    use_entities: [size]\n"
                              "entities: [size]\n",
        "domain/slots/slots.yaml": "slots:\n  size:\n    type: text\n    mappings:\n    - type: from_entity\n"
                                     "      entity: size\nintents: [greet]\n",  # greet again, identical: fine
        "domain/responses.yml": "responses:\n  utter_greet:\n  - text: Hi\nactions: [action_a]\n",
        "domain/notes.yml": "some_tool_setting: 1\n",  # not a domain file: Rasa skips it
        "domain/README.md": "# notes\n",
        "data/responses.yml": "responses:\n  utter_faq/hours:\n  - text: 9 to 5\n",  # retrieval answers in data
    })
    project = load_project(root)
    assert list(project.intents) == ["greet", "inform"]
    assert project.intents["inform"].use_entities == ("size",)
    assert project.slots["size"].mappings == (SlotMapping("from_entity", entity="size"),)
    assert set(project.responses) == {"utter_greet", "utter_faq/hours"}
    assert project.actions == ("action_a",)
    assert project.version == "3.1"
    assert project.unsupported == ()


@pytest.mark.parametrize(("first", "second", "what"), [
    ("slots:\n  size:\n    type: text\n", "slots:\n  size:\n    type: float\n", "slot 'size'"),
    ("responses:\n  utter_a:\n  - text: A\n", "responses:\n  utter_a:\n  - text: B\n", "response 'utter_a'"),
    ("intents:\n- inform\n", "intents:\n- inform:\n    use_entities: false\n", "intent 'inform'"),
    ("forms:\n  f:\n    required_slots: [a]\n", "forms:\n  f:\n    required_slots: [b]\n", "form 'f'"),
])
def test_domain_conflict_names_both_files(write: Write, first: str, second: str, what: str) -> None:
    root = write({"domain/a.yml": first, "domain/b.yml": second})
    with pytest.raises(RasaProjectError, match=rf"{what}.*domain/a\.yml and domain/b\.yml"):
        load_project(root)


def test_response_in_data_conflicting_with_domain(write: Write) -> None:
    root = write({"domain.yml": "responses:\n  utter_a:\n  - text: A\n",
                    "data/r.yml": "responses:\n  utter_a:\n  - text: B\n"})
    with pytest.raises(RasaProjectError, match=r"domain\.yml and data/r\.yml"):
        load_project(root)


# ------------------------------------------------------------------------------------------------- intents


@pytest.mark.parametrize(("written", "use", "ignore"), [
    ("- greet", None, ()),
    ("- greet:\n    use_entities: true", None, ()),
    ("- greet:\n    use_entities: false", (), ()),
    ("- greet:\n    use_entities: []", (), ()),
    ("- greet:\n    use_entities: [name, city]", ("name", "city"), ()),
    ("- greet:\n    ignore_entities: [city]", None, ("city",)),
    ("- greet:", None, ()),
])
def test_intent_entities(write: Write, written: str, use: tuple[str, ...] | None, ignore: tuple[str, ...]) -> None:
    intent = load_project(write({"domain.yml": f"intents:\n{written}\n"})).intents["greet"]
    assert (intent.use_entities, intent.ignore_entities) == (use, ignore)
    assert intent.featurised_entities(("name", "city", "size")) == tuple(
        e for e in ("name", "city", "size") if (use is None or e in use) and e not in ignore)


def test_intent_triggers_are_listed(write: Write) -> None:
    project = load_project(write({"domain.yml": "intents:\n- hi:\n    triggers: utter_hi\n"}))
    assert project.unsupported[0].key == "intents.hi.triggers"


# ------------------------------------------------------------------------------------------------- slots


@pytest.mark.parametrize(("written", "kind", "influence"), [
    ("type: text", "text", True),
    ("type: bool\n    influence_conversation: false", "bool", False),
    ("type: float\n    min_value: -2\n    max_value: 7.5", "float", True),
    ("type: list", "list", True),
    ("type: any", "any", False),
    ("type: unfeaturized", "any", False),
    ("type: rasa.shared.core.slots.TextSlot", "text", True),
    ("type: rasa.core.slots.UnfeaturizedSlot", "any", False),
    ("type: rasa.shared.core.slots.CategoricalSlot\n    values: [a, 2]", "categorical", True),
])
def test_slot_types(write: Write, written: str, kind: str, influence: bool) -> None:
    project = load_project(write({"domain.yml": f"version: '3.1'\nslots:\n  s:\n    {written}\n"}))
    slot = project.slots["s"]
    assert (slot.type, slot.influence_conversation) == (kind, influence)
    assert project.unsupported == ()
    if kind == "float":
        assert (slot.min_value, slot.max_value) == (-2.0, 7.5)
    if kind == "categorical":
        assert slot.values == ("a", "2")


def test_custom_slot_class_is_listed_and_read_as_any(write: Write) -> None:
    project = load_project(write({"domain.yml": "slots:\n  s:\n    type: addons.slots.MySlot\n"}))
    assert (project.slots["s"].type, project.slots["s"].influence_conversation) == ("any", False)
    assert project.unsupported == (Unsupported("domain.yml", "slots.s.type", project.unsupported[0].why),)


def test_unknown_mapping_type_is_listed_and_skipped(write: Write) -> None:
    domain = "slots:\n  s:\n    type: text\n    mappings:\n    - type: from_llm\n    - type: from_text\n"
    project = load_project(write({"domain.yml": domain}))
    assert project.slots["s"].mappings == (SlotMapping("from_text"),)
    assert keys_of(project) == {"slots.s.mappings[0].type"}


# ------------------------------------------------------------------------------------------------- config


POLICIES_CASES = [
    ("- name: MemoizationPolicy\n  max_history: 3\n- name: AugmentedMemoizationPolicy\n  max_history: 5", 5, True),
    ("- name: MemoizationPolicy\n- name: AugmentedMemoizationPolicy\n  max_history: 2", None, True),
    ("- name: TEDPolicy\n  max_history: 8\n- name: RulePolicy", None, False),
    ("- name: rasa.core.policies.memoization.MemoizationPolicy\n  max_history: 2", 2, False),
]


@pytest.mark.parametrize(("policies", "max_history", "augmented"), POLICIES_CASES)
def test_memoization_history(write: Write, policies: str, max_history: int | None, augmented: bool) -> None:
    project = load_project(write({"domain.yml": "intents: [a]\n", "config.yml": f"policies:\n{policies}\n"}))
    assert (project.max_history, project.augmented_memoization) == (max_history, augmented)
    assert project.unsupported == ()


@pytest.mark.parametrize("config", [None, "language: en\n", "language: en\npipeline: []\npolicies:\n"],
                         ids=["no-config.yml", "no-pipeline-key", "empty-pipeline"])
def test_missing_config_reads_as_rasa_suggested_config(write: Write, config: str | None) -> None:
    files = {"domain.yml": "intents: [a]\n"} | ({"config.yml": config} if config is not None else {})
    project = load_project(write(files))
    assert (project.language, project.fallback_threshold, project.ambiguity_threshold) == ("en", 0.3, 0.1)
    assert (project.core_fallback_threshold, project.core_fallback_action) == (0.3, "action_default_fallback")
    assert (project.max_history, project.augmented_memoization) == (None, False)


def test_pipeline_without_fallback_classifier(write: Write) -> None:
    config = "pipeline:\n- name: WhitespaceTokenizer\n- name: DIETClassifier\n"
    assert load_project(write({"domain.yml": "intents: [a]\n", "config.yml": config})).fallback_threshold is None


def test_fallback_classifier_defaults(write: Write) -> None:
    config = ("pipeline:\n- name: FallbackClassifier\n"
              "policies:\n- name: RulePolicy\n  enable_fallback_prediction: false\n")
    project = load_project(write({"domain.yml": "intents: [a]\n", "config.yml": config}))
    assert (project.fallback_threshold, project.ambiguity_threshold) == (0.3, 0.1)
    assert project.core_fallback_threshold == 0.0  # RulePolicy never predicts the fallback action


def test_2x_fallback_policy_thresholds(write: Write) -> None:
    config = """
pipeline:
- name: DIETClassifier
policies:
- name: FallbackPolicy
  nlu_threshold: 0.45
  core_threshold: 0.25
  fallback_action_name: action_sorry
"""
    project = load_project(write({"domain.yml": "intents: [a]\n", "config.yml": config}))
    assert (project.fallback_threshold, project.ambiguity_threshold) == (0.45, 0.1)
    assert (project.core_fallback_threshold, project.core_fallback_action) == (0.25, "action_sorry")
    assert keys_of(project) == {"policies[0].FallbackPolicy"}


def test_unsupported_components_and_policies(write: Write) -> None:
    config = """
language: de
pipeline:
- name: SpacyNLP
- name: SpacyTokenizer
- name: rasa.nlu.tokenizers.whitespace_tokenizer.WhitespaceTokenizer
- name: DucklingEntityExtractor
  url: http://duckling:8000
- name: SpacyEntityExtractor
- name: my_package.components.Sentiment
- name: NoSuchComponent
policies:
- name: TEDPolicy
- name: UnexpecTEDIntentPolicy
- name: MappingPolicy
- name: my_package.policies.Custom
- name: RulePolicy
"""
    project = load_project(write({"domain.yml": "intents: [a]\n", "config.yml": config}))
    assert {u.key for u in project.unsupported if u.file == "config.yml"} == {
        "language", "pipeline[0].SpacyNLP", "pipeline[3].DucklingEntityExtractor",
        "pipeline[4].SpacyEntityExtractor", "pipeline[5].my_package.components.Sentiment",
        "pipeline[6].NoSuchComponent", "policies[2].MappingPolicy", "policies[3].my_package.policies.Custom",
    }
    duckling = next(u for u in project.unsupported if "Duckling" in u.key)
    assert "Duckling" in duckling.why and "regex" in duckling.why


# ------------------------------------------------------------------------------------------------- endpoints


def test_endpoints(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_TEST_ACTIONS_HOST", "actions.internal")
    endpoints = """
action_endpoint:
  url: "http://${KEFU_TEST_ACTIONS_HOST}:5055/webhook"
tracker_store:
  type: redis
lock_store:
  type: redis
event_broker:
  type: pika
nlg:
  url: http://nlg
models:
  url: http://models
# a commented-out key and an empty one are not there
rasa_x:
"""
    project = load_project(write({"domain.yml": "intents: [a]\n", "endpoints.yml": endpoints}))
    assert project.action_endpoint == "http://actions.internal:5055/webhook"
    listed = {u.key: u.why for u in project.unsupported}
    assert set(listed) == {"tracker_store", "lock_store", "event_broker", "nlg", "models"}
    assert "SQL database" in listed["tracker_store"]


def test_no_endpoints_no_actions(write: Write) -> None:
    project = load_project(write({"domain.yml": "intents: [a]\n"}))
    assert project.action_endpoint is None and project.actions_package is None


def test_actions_module(write: Write) -> None:
    project = load_project(write({"domain.yml": "intents: [a]\n", "actions.py": "ACTIONS = []\n"}))
    assert project.actions_package == project.root / "actions.py"


# ------------------------------------------------------------------------------------------------- unsupported


def test_response_variations_kefu_does_not_show(write: Write) -> None:
    domain = """
responses:
  utter_a:
  - text: Hi
    buttons:
    - title: Yes
      payload: /affirm
  - text: Hi on slack
    channel: slack
  - image: https://example.com/cat.png
  - custom:
      blocks: []
  utter_b:
  - Just text
"""
    project = load_project(write({"domain.yml": domain}))
    assert keys_of(project) == {"responses.utter_a[1].channel", "responses.utter_a[2].image",
                                "responses.utter_a[3].custom"}
    assert project.responses["utter_b"] == ({"text": "Just text"},)
    assert project.responses["utter_a"][0]["buttons"][0]["title"] == "Yes"  # YAML 1.2: `Yes` stays text


def test_markdown_and_json_training_data_are_listed(write: Write) -> None:
    root = write({
        "domain.yml": "intents: [greet]\n",
        "data/nlu.md": "## intent:greet\n- hi\n",
        "data/stories.md": "## happy path\n* greet\n  - utter_greet\n",
        "data/old.json": '{"rasa_nlu_data": {}}',
        "tests/conversation_tests.md": "## test\n* greet: hi\n  - utter_greet\n",
        "data/blank.md": "\n",
    })
    listed = {(u.file, u.key) for u in load_project(root).unsupported}
    assert listed == {("data/nlu.md", "nlu"), ("data/stories.md", "stories"), ("data/old.json", "rasa_nlu_data"),
                      ("tests/conversation_tests.md", "stories")}


def test_e2e_actions_and_unknown_domain_keys_are_listed(write: Write) -> None:
    project = load_project(write({"domain.yml": "intents: [a]\ne2e_actions:\n- Hello there\nwhatever: 1\n"}))
    assert keys_of(project) == {"e2e_actions", "whatever"}


# ------------------------------------------------------------------------------------------------- errors


def test_not_a_rasa_project(write: Write) -> None:
    with pytest.raises(RasaProjectError, match="not a Rasa project: no domain.yml or domain/"):
        load_project(write({"config.yml": "language: en\n"}))


@pytest.mark.parametrize(("files", "message"), [
    ({"domain.yml": "intents:\n- greet\n  - bad: [\n"}, r"domain\.yml:\d+:\d+: malformed YAML"),
    ({"domain.yml": "- greet\n"}, r"domain\.yml: the domain must be a mapping"),
    ({"domain.yml": "intents: [a]\nintents: [b]\n"}, r"domain\.yml:2:1: malformed YAML: duplicate key 'intents'"),
    ({"domain.yml": "slots:\n  s:\n    influence_conversation: true\n"}, r"domain\.yml: slots\.s: no `type`"),
    ({"domain.yml": "slots:\n  s:\n    type: textual\n"}, r"slots\.s\.type: unknown slot type"),
    ({"domain.yml": "slots:\n  s:\n    type: text\n    mappings:\n    - entity: x\n"},
     r"slots\.s\.mappings\[0\]: expected a mapping with a `type`"),
    ({"domain.yml": "slots:\n  s:\n    type: text\n    mappings:\n    - type: from_entity\n"},
     r"slots\.s\.mappings\[0\]: a from_entity mapping needs an `entity`"),
    ({"domain.yml": "intents: [a]\n", "data/nlu.yml": "nlu:\n- intent: a\n  examples: |\n - x\n"},
     r"data/nlu\.yml:\d+:\d+: malformed YAML"),
    ({"domain.yml": "intents: [a]\n", "config.yml": "pipeline:\n- WhitespaceTokenizer\n"},
     r"config\.yml: pipeline\[0\]: expected a mapping with a `name`"),
    ({"domain.yml": "intents: [a]\n", "endpoints.yml": "action_endpoint: http://x\n"},
     r"endpoints\.yml: action_endpoint: expected a mapping"),
])
def test_errors_name_the_file(write: Write, files: dict[str, str], message: str) -> None:
    with pytest.raises(RasaProjectError, match=message):
        load_project(write(files))


def test_read_yaml_is_yaml_1_2(tmp_path: Path) -> None:
    path = tmp_path / "f.yml"
    path.write_text("a: yes\nb: on\nc: true\nd: False\n", encoding="utf-8")
    assert read_yaml(path) == {"a": "yes", "b": "on", "c": True, "d": False}
    path.write_text("", encoding="utf-8")
    assert read_yaml(path) is None


# ------------------------------------------------------------------------------------------------- real projects

REAL = sorted([RASA_PROJECTS / "insurance-demo", *RASA_PROJECTS.glob("rasa-3.x-form-examples/0*")])


@pytest.mark.skipif(not RASA_PROJECTS.is_dir(), reason="shared Rasa projects not available")
@pytest.mark.parametrize("root", REAL, ids=[p.name for p in REAL])
def test_real_projects_load(root: Path) -> None:
    project = load_project(root)
    assert project.intents and project.responses and project.nlu_files and project.test_files
    assert project.actions_package is not None
    for slot in project.form_slots:
        assert slot in project.slots


@pytest.mark.skipif(not RASA_PROJECTS.is_dir(), reason="shared Rasa projects not available")
def test_insurance_demo_facts() -> None:
    project = load_project(RASA_PROJECTS / "insurance-demo")
    assert project.version == "2.0" and len(project.forms) == 6
    assert (project.fallback_threshold, project.ambiguity_threshold) == (0.3, 0.1)
    assert (project.max_history, project.augmented_memoization) == (3, True)
    assert project.action_endpoint == "http://localhost:5055/webhook"
    assert any("Duckling" in u.key for u in project.unsupported)
    assert [f.name for f in project.nlu_files] == ["nlu.yml", "state_lookup.yml"]  # the empty nlg_nlu.yml skipped
    claim_id = project.slots["claim_id"]
    assert SlotMapping("from_entity", entity="claim_id", conditions=(
        MappingCondition("get_claim_form"), MappingCondition("pay_claim_form"))) in claim_id.mappings
    assert SlotMapping("from_text", conditions=(MappingCondition("get_claim_form", "claim_id"),)) in claim_id.mappings
    assert SlotMapping("from_entity", entity="claim_id") in claim_id.mappings  # auto_fill
    assert project.slots["claim_pay_amount"].mappings[0].conditions == (MappingCondition("pay_claim_form"),)
    assert SlotMapping("from_entity", entity="claim_pay_amount") not in project.slots["claim_pay_amount"].mappings
    confirm = project.slots["confirm_file_new_claim"].mappings
    assert [m.value for m in confirm if m.type == "from_intent"] == ["yes", "no"]
    assert project.slots["AA_quote_insurance_type"].type == "categorical"
    assert "utter_greet" not in project.actions and "validate_quote_form" in project.actions


@pytest.mark.skipif(not RASA_PROJECTS.is_dir(), reason="shared Rasa projects not available")
def test_3x_form_example_conditions() -> None:
    project = load_project(RASA_PROJECTS / "rasa-3.x-form-examples" / "03-conditions")
    assert project.slots["shirt_size"].mappings == (
        SlotMapping("from_entity", entity="shirt_size", conditions=(MappingCondition("shirt_size_form"),)),)
    assert project.forms["shirt_size_form"].required_slots == ("shirt_size",)
    assert project.fallback_threshold is None  # its pipeline has no FallbackClassifier
    assert keys_of(project) == {"responses.utter_cheer_up[0].image"}

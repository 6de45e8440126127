"""The dialogue definition compiler: what a dialogue.yml compiles to, and how a wrong one is refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from dialogue.definition import HANDOFF_STATE, IDLE, DefinitionError, DialogueDefinition, load_definition
from dialogue.domain import Domain
from dialogue.flows import FlowContext, Flows
from policy import Observation

DOMAIN = {
    "intents": ["greet", "goodbye", "affirm", "deny", "inform", "cancel", "transfer_money", "check_balance",
                "ask_fees", "complaint", "out_of_scope"],
    "entities": ["amount", "account"],
    "slots": {"amount": {"type": "text"}, "recipient": {"type": "text"}, "account": {"type": "text"}},
    "responses": {name: [{"text": name, "language": "en"}] for name in (
        "utter_greet", "utter_goodbye", "utter_ask_amount", "utter_ask_recipient", "utter_confirm_transfer",
        "utter_transfer_cancelled", "utter_ask_account", "utter_cancelled", "utter_handoff", "utter_fallback")},
}
ACTIONS = ["action_transfer", "action_balance", "action_answer_kb", "action_handoff"]

BANK = """\
tasks:
  transfer:
    intents: [transfer_money]
    slots:
      - {name: amount, ask: utter_ask_amount}
      - name: recipient
        ask: utter_ask_recipient
        from_text: {}
    confirm: {ask: utter_confirm_transfer, yes: [affirm], no: [deny], cancelled: utter_transfer_cancelled}
    action: action_transfer
    reset: [amount, recipient]
  balance:
    intents: [check_balance]
    slots:
      - {name: account, ask: utter_ask_account}
    starts_on: [account]
    action: action_balance
cancel: {intents: [cancel], reply: utter_cancelled}
handoff: {intents: [complaint], action: action_handoff, reply: utter_handoff}
small_talk:
  greet: utter_greet
  goodbye: {reply: utter_goodbye, ends_task: true}
knowledge: {action: action_answer_kb, intents: [ask_fees]}
fallback: utter_fallback
"""


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    path = tmp_path / "domain.yml"
    path.write_text(yaml.safe_dump(DOMAIN), encoding="utf-8")
    return Domain.load(path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dialogue.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def bank(tmp_path: Path, domain: Domain) -> DialogueDefinition:
    return load_definition(write(tmp_path, BANK), domain, ACTIONS)


@pytest.fixture
def flows(bank: DialogueDefinition) -> Flows:
    return bank.flows()


def allowed(flows: Flows, state: str, intent: str, **slots: str) -> set[str]:
    return set(flows.allowed(FlowContext(state, intent, dict(slots), frozenset(slots))))


def obs(state: str, intent: str, *filled: str, low: bool = False) -> Observation:
    return Observation(state=state, intent=intent, confidence=0.3 if low else 0.95, filled_slots=frozenset(filled),
                       low_confidence=low)


def test_states_and_actions(flows: Flows) -> None:
    assert set(flows.states) == {IDLE, "transfer_need_amount", "transfer_need_recipient", "transfer_confirm",
                                 "balance_need_account", HANDOFF_STATE}
    assert flows.initial_state == IDLE
    assert set(flows.actions) == {*ACTIONS, "utter_greet", "utter_goodbye", "utter_ask_amount", "utter_ask_recipient",
                                  "utter_confirm_transfer", "utter_transfer_cancelled", "utter_ask_account",
                                  "utter_cancelled", "utter_handoff", "utter_fallback"}


def test_a_transfer_walks_slots_then_confirmation(flows: Flows, bank: DialogueDefinition) -> None:
    # asked in order: the recipient only once the amount is known; the action only after "yes"
    first = allowed(flows, IDLE, "transfer_money")
    assert "utter_ask_amount" in first and "utter_ask_recipient" not in first and "action_transfer" not in first
    assert flows.advance(FlowContext(IDLE, "transfer_money", {}), "utter_ask_amount") == "transfer_need_amount"
    second = allowed(flows, "transfer_need_amount", "inform", amount="50")
    assert {"utter_ask_recipient", "utter_ask_amount"} <= second and "utter_confirm_transfer" not in second
    full = {"amount": "50", "recipient": "Li Wei"}
    ready = set(flows.allowed(FlowContext("transfer_need_recipient", "inform", full)))
    assert "utter_confirm_transfer" in ready and "action_transfer" not in ready  # never without the confirmation
    assert flows.advance(FlowContext("transfer_need_recipient", "inform", dict(full)), "utter_confirm_transfer") == \
        "transfer_confirm"
    yes = set(flows.allowed(FlowContext("transfer_confirm", "affirm", full)))
    assert "action_transfer" in yes and "utter_transfer_cancelled" not in yes
    assert flows.advance(FlowContext("transfer_confirm", "affirm", dict(full)), "action_transfer") == IDLE
    no = set(flows.allowed(FlowContext("transfer_confirm", "deny", full)))
    assert "utter_transfer_cancelled" in no and "action_transfer" not in no
    # the default policy follows the same path
    policy = bank.default_policy
    assert policy(obs(IDLE, "transfer_money"), sorted(first)) == "utter_ask_amount"
    assert policy(obs("transfer_need_amount", "inform", "amount"), sorted(second)) == "utter_ask_recipient"
    assert policy(obs("transfer_need_recipient", "inform", "amount", "recipient"), sorted(ready)) == \
        "utter_confirm_transfer"
    assert policy(obs("transfer_confirm", "affirm", "amount", "recipient"), sorted(yes)) == "action_transfer"
    assert policy(obs("transfer_confirm", "deny", "amount", "recipient"), sorted(no)) == "utter_transfer_cancelled"


def test_task_end_resets_its_slots_and_from_text_joins_the_domain(bank: DialogueDefinition) -> None:
    resets = bank.resets()
    assert resets["action_transfer"] == ("amount", "recipient")
    assert resets["utter_transfer_cancelled"] == ("amount", "recipient")
    assert resets["utter_cancelled"] == ("amount", "recipient")
    assert "action_balance" not in resets
    (mapping,) = bank.from_text()
    assert (mapping.slot, mapping.when_asked_by, mapping.as_intent) == ("recipient", "utter_ask_recipient", "inform")
    # by default a message that changes the subject is not an answer; one filed under the task's own intent may be
    assert mapping.not_intent == frozenset({"check_balance", "cancel", "complaint", "greet", "goodbye", "ask_fees"})
    # an action that refuses one of its task's values (clears it) sends the task back to wait for it
    assert bank.reopens()["action_transfer"] == (("amount", "transfer_need_amount"),
                                                 ("recipient", "transfer_need_recipient"))


def test_in_request_is_off_unless_asked_for(tmp_path: Path, domain: Domain, bank: DialogueDefinition) -> None:
    (plain,) = bank.from_text()
    assert plain.in_request is False  # a typed value (an amount, card digits) is never guessed from a clause
    path = write(tmp_path, BANK.replace("        from_text: {}\n", "        from_text: {in_request: true}\n", 1))
    (free,) = load_definition(path, domain, ACTIONS).from_text()
    assert free.in_request is True


def test_awaited_slots_are_those_of_the_waiting_state(flows: Flows) -> None:
    assert flows.awaited("transfer_need_recipient", "action_answer_kb") == frozenset({"recipient"})
    assert flows.awaited("balance_need_account", "utter_greet") == frozenset({"account"})
    assert flows.awaited(IDLE, None) == frozenset() and flows.awaited("transfer_confirm", None) == frozenset()
    # right after the task's own action a wait is a refused or reset value, not a question still open
    assert flows.awaited("balance_need_account", "action_balance") == frozenset()


def test_opening_names_the_task_and_its_asides(bank: DialogueDefinition) -> None:
    opening = bank.opening("transfer_money")
    assert opening is not None
    task, small_talk, others = opening
    assert task.name == "transfer"
    assert small_talk == frozenset({"greet", "goodbye"})
    assert others == frozenset({"check_balance", "ask_fees", "cancel"})
    assert bank.opening("greet") is None


@pytest.mark.parametrize(("intent", "values", "claimed"), [
    ("transfer_money", {"amount"}, True),  # a value of the task the intent starts
    ("check_balance", {"amount"}, False),  # a value of another task
    ("inform", {"account"}, True),  # an answer with a value a task starts on
    ("inform", {"amount"}, False),  # an answer with a value no task starts on
    ("greet", {"account"}, False),
])
def test_claims(bank: DialogueDefinition, intent: str, values: set[str], claimed: bool) -> None:
    assert bank.claims(intent, values) is claimed


def test_starts_on_a_bare_value_only_from_idle_and_only_when_this_message_gave_it(flows: Flows) -> None:
    assert "action_balance" in allowed(flows, IDLE, "inform", account="savings")
    remembered = FlowContext(IDLE, "inform", {"account": "savings"}, frozenset())  # known from earlier, not now
    assert "action_balance" not in flows.allowed(remembered)
    assert "action_balance" not in allowed(flows, "transfer_need_amount", "inform", account="savings")


@pytest.mark.parametrize("state", [IDLE, "transfer_need_amount", "transfer_confirm", "balance_need_account"])
def test_small_talk_fallback_knowledge_and_cancel_in_every_open_state(flows: Flows, state: str) -> None:
    here = allowed(flows, state, "cancel")
    assert {"utter_greet", "utter_fallback", "action_answer_kb", "action_handoff", "utter_cancelled"} <= here
    assert flows.advance(FlowContext(state, "greet", {}), "utter_greet") == state
    assert flows.advance(FlowContext(state, "goodbye", {}), "utter_goodbye") == IDLE  # ends_task
    assert flows.advance(FlowContext(state, "cancel", {}), "utter_cancelled") == IDLE
    assert flows.advance(FlowContext(state, "complaint", {}), "action_handoff") == HANDOFF_STATE


def test_handed_off_allows_only_the_handoff_reply(flows: Flows) -> None:
    assert allowed(flows, HANDOFF_STATE, "transfer_money", amount="5", recipient="x") == {"utter_handoff"}


@pytest.mark.parametrize(
    ("observation", "expected"),
    [
        (obs(HANDOFF_STATE, "greet"), "utter_handoff"),
        (obs(IDLE, "transfer_money", low=True), "utter_fallback"),
        (obs(IDLE, "out_of_scope"), "utter_fallback"),
        (obs("transfer_need_amount", "greet"), "utter_greet"),
        (obs("transfer_need_amount", "ask_fees"), "action_answer_kb"),
        (obs(IDLE, "complaint"), "action_handoff"),
        (obs("transfer_need_amount", "cancel"), "utter_cancelled"),
        (obs("transfer_need_amount", "check_balance"), "utter_ask_account"),  # switching task midway
        (obs(IDLE, "affirm"), "utter_fallback"),
    ],
)
def test_default_rules(flows: Flows, bank: DialogueDefinition, observation: Observation, expected: str) -> None:
    mask = flows.allowed(FlowContext(observation.state, observation.intent,
                                     {s: "v" for s in observation.filled_slots}))
    assert bank.default_policy(observation, mask) == expected


def test_author_rules_come_first(tmp_path: Path, domain: Domain) -> None:
    text = BANK + "rules:\n  - when: {intent: [greet], state: [idle]}\n    then: [action_answer_kb, utter_greet]\n"
    definition = load_definition(write(tmp_path, text), domain, ACTIONS)
    mask = definition.flows().allowed(FlowContext(IDLE, "greet", {}))
    assert definition.default_policy(obs(IDLE, "greet"), mask) == "action_answer_kb"
    mask = definition.flows().allowed(FlowContext("transfer_need_amount", "greet", {}))
    assert definition.default_policy(obs("transfer_need_amount", "greet"), mask) == "utter_greet"


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("intents: [transfer_money]", "intents: [transfer_mony]", 3,
         "tasks.transfer.intents[0]: 'transfer_mony' is not an intent of domain.yml (did you mean 'transfer_money'?)"),
        ("{name: amount, ask: utter_ask_amount}", "{name: amout, ask: utter_ask_amount}", 5,
         "'amout' is not a slot of domain.yml (did you mean 'amount'?)"),
        ("ask: utter_ask_recipient", "ask: utter_ask_recipent", 7,
         "'utter_ask_recipent' is not a response of domain.yml (did you mean 'utter_ask_recipient'?)"),
        ("action: action_transfer", "action: action_transfr", 10,
         ("'action_transfr' is neither a response of domain.yml nor an action of the bot's actions (did you mean "
         "'action_transfer'?)")),
        ("        from_text: {}\n", "", 6, "no mapping can fill slot 'recipient'"),
        ("        from_text: {}\n", "        from_text: {in_request: maybe}\n", 8, "in_request is true or false"),
        ("    reset: [amount, recipient]", "    resett: [amount, recipient]", 11, "unknown key 'resett' (did you mean 'reset'?"),
        ("starts_on: [account]", "starts_on: [amount]", 16, "'amount' is not one of the task's slots (account)"),
        ("fallback: utter_fallback", "fallback: utter_greet", 21, "'utter_greet' is already the fallback"),
    ],
)
def test_mistakes_are_refused_with_file_line_and_fix(
    tmp_path: Path, domain: Domain, old: str, new: str, line: int, message: str
) -> None:
    assert old in BANK
    path = write(tmp_path, BANK.replace(old, new, 1))
    with pytest.raises(DefinitionError) as info:
        load_definition(path, domain, ACTIONS)
    problems = info.value.problems
    assert any(p.startswith(f"{path}:{line}:") and message in p for p in problems), problems
    assert str(path) in str(info.value)


def test_every_problem_is_listed_at_once(tmp_path: Path, domain: Domain) -> None:
    path = write(tmp_path, BANK.replace("transfer_money]", "transfer]").replace("utter_ask_account", "utter_nope"))
    with pytest.raises(DefinitionError) as info:
        load_definition(path, domain, ACTIONS)
    assert len(info.value.problems) == 2


def test_unknown_actions_are_not_checked_when_the_action_server_is_remote(tmp_path: Path, domain: Domain) -> None:
    path = write(tmp_path, BANK.replace("action_transfer", "action_remote_only"))
    assert load_definition(path, domain, None).tasks[0].action == "action_remote_only"


@pytest.mark.parametrize("text", ["tasks: [1, 2]", "- just\n- a list\n", "tasks:\n  bad-name: {intents: [greet]}\n",
                                  "small_talk: {greet: utter_greet}\nextra: 1\n", ": : :"])
def test_malformed_files_are_refused_not_crashed_on(tmp_path: Path, domain: Domain, text: str) -> None:
    with pytest.raises(DefinitionError):
        load_definition(write(tmp_path, text), domain, ACTIONS)


def test_the_shop_as_data_behaves_as_its_hand_written_fsm_did() -> None:
    """Every state x intent x slots x this-message combination: the same mask, the same transitions and the same
    default-policy choice as the Python flows module the shop had before its dialogue became data."""
    import itertools

    from dialogue.flows import load_flows
    from tests.conftest import SHOP, shop_dialogue

    domain, new = shop_dialogue()
    old = load_flows(Path(__file__).parent / "data" / "shop_flows.py")
    assert new.definition is not None and not (SHOP / "flows.py").exists()
    assert set(new.states) == set(old.states) and new.actions == old.actions
    slot_sets = [(), ("order_id",), ("reason",), ("order_id", "reason")]
    for state, intent, given in itertools.product(old.states, domain.intents, slot_sets):
        for this in (frozenset(), frozenset(given)):
            def context(s: str = state, i: str = intent, g: tuple[str, ...] = given,
                        t: frozenset[str] = this) -> FlowContext:
                return FlowContext(s, i, dict.fromkeys(g, "x"), t)
            mask = old.allowed(context())
            assert new.allowed(context()) == mask, (state, intent, given, this)
            for action in mask:
                assert new.advance(context(), action) == old.advance(context(), action)
            for low, flags in itertools.product((False, True), ((), ("prompt_injection",))):
                seen = Observation(state=state, intent=intent, confidence=0.9, filled_slots=frozenset(given),
                                   low_confidence=low, flags=flags)
                assert new.default_policy(seen, mask) == old.default_policy(seen, mask)

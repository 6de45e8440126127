"""The FSM picture: the layout places every state of the shop's compiled dialogue without overlaps, groups what
repeats, and the drawing (SVG or PNG) names every state; `kefu flows show` prints and draws it, or says in one line
why it cannot."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from statemachine import State, StateMachine
from typer.testing import CliRunner

from dialogue.definition import HANDOFF_STATE, IDLE
from dialogue.diagram import Box, FsmGraph, Layout, describe, graph_of, group, layout, render
from dialogue.flows import Flows, load_flows
from kefu.cli import app
from tests.conftest import SHOP, shop_dialogue

PYTHON_FLOWS = Path(__file__).parent / "data" / "shop_flows.py"  # the shop's dialogue as a Python module

runner = CliRunner()


@pytest.fixture(scope="module")
def shop_graph() -> FsmGraph:
    return graph_of(shop_dialogue()[1])


@pytest.fixture(scope="module")
def shop_layout(shop_graph: FsmGraph) -> Layout:
    return layout(shop_graph, "shop")


class Checkout(StateMachine):
    """A hand-made flows module: a task with a confirmation, whose yes and no lead back to the start."""

    start = State(initial=True)
    pay_need_amount = State()
    pay_confirm = State()
    utter_hello = start.to.itself() | pay_need_amount.to.itself()
    utter_ask_amount = start.to(pay_need_amount) | pay_need_amount.to.itself()
    utter_confirm = pay_need_amount.to(pay_confirm, cond="has_amount")
    action_pay = pay_confirm.to(start)
    utter_cancelled = pay_confirm.to(start, unless="said_yes")

    def has_amount(self) -> bool:
        return True

    def said_yes(self) -> bool:
        return False


def _labels(drawing: Layout) -> list[Box]:
    return [f.label.box for f in drawing.feeds] + [a.label.box for a in drawing.arrows]


def test_every_state_is_placed_once_in_its_layer(shop_graph: FsmGraph, shop_layout: Layout) -> None:
    assert sorted(n.state for n in shop_layout.nodes) == sorted(shop_graph.states)
    idle, handed_off = shop_layout.node(IDLE).box, shop_layout.node(HANDOFF_STATE).box
    others = [n.box for n in shop_layout.nodes if n.state not in (IDLE, HANDOFF_STATE)]
    assert all(idle.right < b.x for b in others), "idle is left of every task state"
    assert all(handed_off.top < b.y for b in [idle, *others]), "handed_off is below everything"
    need_id, need_reason = shop_layout.node("return_need_id").box, shop_layout.node("return_need_reason").box
    assert need_id.center[1] == pytest.approx(need_reason.center[1]) and need_id.right < need_reason.x  # slot order
    assert shop_layout.node("status_need_id").box.y > need_id.top  # one row per task, in file order
    assert all(0 <= b.x and b.right <= shop_layout.width and 0 <= b.y and b.top <= shop_layout.height
               for b in [n.box for n in shop_layout.nodes] + _labels(shop_layout) + [shop_layout.legend.box])


def test_nothing_overlaps(shop_layout: Layout) -> None:
    boxes = [n.box for n in shop_layout.nodes]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    for label, node in itertools.product(_labels(shop_layout), boxes):
        assert not label.overlaps(node), (label, node)


def test_what_repeats_is_grouped(shop_graph: FsmGraph) -> None:
    grouped = group(shop_graph)
    assert set(grouped.everywhere_loops) == {"utter_fallback", "action_answer_kb", "utter_greet", "utter_thanks"}
    assert grouped.loops == {HANDOFF_STATE: ("utter_handoff",)}
    assert grouped.from_any[HANDOFF_STATE] == ("action_handoff",)
    assert set(grouped.from_any[IDLE]) == {"utter_goodbye", "action_order_status", "action_return"}
    assert grouped.from_any["return_need_reason"] == ("utter_ask_reason",)
    assert grouped.arrows == {}  # in the compiled shop every move is allowed from any open state
    shown = {a for acts in grouped.from_any.values() for a in acts} | set(grouped.everywhere_loops) | {
        a for acts in grouped.loops.values() for a in acts}
    assert shown == {t.action for t in shop_graph.transitions}


def test_the_summary_lists_each_states_actions_and_targets(shop_graph: FsmGraph) -> None:
    text = describe(shop_graph)
    blocks = {block.splitlines()[0].split()[0]: block for block in text.split("\n\n")[1:]}
    assert set(blocks) == set(shop_graph.states)
    assert "(initial)" in blocks[IDLE] and "(hand-off)" in blocks[HANDOFF_STATE]
    assert "action_return       -> idle  if wants__return, has__order_id, has__reason" in blocks["return_need_reason"]
    assert blocks[HANDOFF_STATE].splitlines()[1:] == ["  utter_handoff -> handed_off"]


def test_the_python_flows_module_gives_the_same_picture(shop_graph: FsmGraph) -> None:
    graph = graph_of(load_flows(PYTHON_FLOWS))
    assert set(graph.states) == set(shop_graph.states)
    assert graph.rows == (("status_need_id",), ("return_need_id", "return_need_reason"))  # guessed from the names
    assert group(graph).from_any.keys() == group(shop_graph).from_any.keys()


def test_arrows_back_to_the_start_go_round_the_other_states() -> None:
    flows = Flows(machine=Checkout, default_policy=lambda obs, allowed: allowed[0])
    graph = graph_of(flows)
    drawing = layout(graph)
    back = next(a for a in drawing.arrows if a.source == "pay_confirm")
    assert back.target == "start" and back.actions == ("action_pay", "utter_cancelled")
    start, need = drawing.node("start").box, drawing.node("pay_need_amount").box
    assert back.path[-1] == (start.center[0], start.y)  # up into the start state, from below
    assert all(y < need.y for _, y in back.path[1:3])  # under the row, not through it
    assert "utter_cancelled -> start  if not said_yes" in describe(graph)


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_the_drawing_is_written(shop_graph: FsmGraph, shop_layout: Layout, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "deep" / f"flows{suffix}"
    render(shop_layout, path)
    data = path.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    else:
        text = data.decode("utf-8")
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        for name in (*shop_graph.states, "utter_ask_reason", "action_handoff"):  # text stays text: searchable
            assert f">{name}</text>" in text, name


def test_an_unknown_format_is_refused(shop_layout: Layout, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png, \.svg"):
        render(shop_layout, tmp_path / "flows.pdf")
    assert not (tmp_path / "flows.pdf").exists()


# -- the command ----------------------------------------------------------------------------------------------


def test_flows_show_prints_and_draws(tmp_path: Path) -> None:
    out = tmp_path / "shop.svg"
    result = runner.invoke(app, ["flows", "show", "--bot", str(SHOP), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "the FSM of dialogue.yml" in result.output
    assert "utter_ask_reason    -> return_need_reason  if wants__return, has__order_id" in result.output
    assert all(f">{state}</text>" in out.read_text(encoding="utf-8") for state in shop_dialogue()[1].states)


def _copy_shop(tmp_path: Path, *names: str) -> Path:
    bot = tmp_path / "bot"
    bot.mkdir()
    for name in names:
        shutil.copy(SHOP / name, bot / name)
    return bot


def test_flows_show_draws_a_python_flows_module(tmp_path: Path) -> None:
    bot = _copy_shop(tmp_path, "domain.yml")
    shutil.copy(PYTHON_FLOWS, bot / "flows.py")
    (bot / "bot.yml").write_text("name: py\nnlu_data: []\nflows: flows.py\nactions: null\n", encoding="utf-8")
    result = runner.invoke(app, ["flows", "show", "--bot", str(bot)])
    assert result.exit_code == 0, result.output
    assert "the FSM of flows.py" in result.output and "return_need_reason" in result.output
    assert (bot / "models" / "flows.svg").is_file()  # the default place


@pytest.mark.parametrize(("setup", "error"), [
    ("typo", "DefinitionError"),
    ("no_bot_yml", "ConfigError"),
    ("bad_out", "--out must end in .png or .svg"),
])
def test_flows_show_errors_are_clear(tmp_path: Path, setup: str, error: str) -> None:
    bot = _copy_shop(tmp_path, "domain.yml", "dialogue.yml", "actions.py", "shopdb.py")
    args = ["flows", "show", "--bot", str(bot)]
    if setup != "no_bot_yml":
        (bot / "bot.yml").write_text("name: t\nnlu_data: []\ndialogue: dialogue.yml\n", encoding="utf-8")
    if setup == "typo":
        text = (bot / "dialogue.yml").read_text(encoding="utf-8")
        (bot / "dialogue.yml").write_text(text.replace("ask: utter_ask_reason", "ask: utter_ask_reasn"), "utf-8")
    if setup == "bad_out":
        args += ["--out", str(tmp_path / "flows.jpg")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert error in result.output and "Traceback" not in result.output
    if setup == "typo":  # one line: the file, the line, what is wrong and the fix
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "dialogue.yml:" in lines[0] and "did you mean 'utter_ask_reason'" in lines[0]
    assert not (bot / "models").exists()

"""A picture of a bot's dialogue FSM, laid out here (no graphviz) and drawn with matplotlib.

The compiled FSM of a ``dialogue.yml`` is dense on purpose: small talk, the fallback and the knowledge action keep
every state, and any task can be asked for from any state, so drawing every transition as its own arrow gives a
hairball nobody can read. The picture therefore groups what repeats:

* actions that keep *every* open state (small talk, the fallback...) are listed once, in the legend;
* an action that keeps only some states is listed in the state's box (``loops:``);
* an action that leads to a state *from any open state* (a task's question, its action back to ``idle``, the
  hand-off) is one dashed feed into that state, hanging from a vertical "any open state" bus;
* only what is left (a confirmation's yes/no, a Python flows module's own transitions) is drawn as solid arrows
  between the two states, one arrow per pair listing its actions.

States are placed in layers: the initial state on the left, each task's waiting states in a row to its right in the
order the task asks for its slots (the confirmation last), the hand-off state at the bottom. All text is monospace,
so its size in layout units (one unit = one character's advance) is known without a renderer, and :func:`layout`
is pure: the tests check positions without drawing, and :func:`render` only turns a :class:`Layout` into a PNG or
SVG. :func:`describe` is the same FSM as plain text, one line per action and target, with the conditions.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statemachine import StateMachine

from dialogue.definition import HANDOFF_STATE, definition_of
from dialogue.flows import Flows

FORMATS = (".png", ".svg")

# Layout units: one unit is the advance of one monospace character, so a line of n characters is n units wide.
LINE = 2.2  # height of a line of text
PAD_X, PAD_Y = 1.5, 0.8  # inside a state's box
GAP_X, GAP_Y = 8.0, 3.0  # between columns (the bus runs in the first gap) and between rows
DROP = 1.6  # the vertical end of a feed, from its horizontal line down to the state's box
MARGIN = 2.0
INITIAL_MARK = 5.0  # room left of the initial state for the "start here" dot and arrow
WRAP = 34  # characters per line of an action list
ARROW_WRAP = 28  # ... on a curved arrow
CHAR_EM = 0.602  # advance of a DejaVu Sans Mono character, in em: what a layout unit is at render time


@dataclass(frozen=True)
class Transition:
    source: str
    action: str
    target: str
    conditions: tuple[str, ...] = ()


@dataclass(frozen=True)
class FsmGraph:
    """The FSM as data: states, transitions (with their conditions) and the rows the layout places states in."""

    states: tuple[str, ...]
    initial: str
    transitions: tuple[Transition, ...]
    rows: tuple[tuple[str, ...], ...]  # one per task: its waiting states in slot order, the confirmation last
    handoff: str | None = None

    @property
    def open_states(self) -> tuple[str, ...]:
        """Every state but the hand-off one: where "from any state" means something."""
        return tuple(s for s in self.states if s != self.handoff)


def graph_of(flows: Flows) -> FsmGraph:
    """The graph of a bot's flows: a compiled ``dialogue.yml`` gives its task rows; a Python flows module's rows are
    guessed from the state names (``<task>_need_<slot>``, ``<task>_confirm``), in the order the class declares them."""
    machine = flows.machine
    states = tuple(str(s.id) for s in machine.states)  # type: ignore[attr-defined]
    initial = str(machine.initial_state.id)  # type: ignore[attr-defined]
    handoff = HANDOFF_STATE if HANDOFF_STATE in states else None
    definition = definition_of(flows)
    if definition is not None:
        rows = tuple(t.states for t in definition.tasks if t.states)
    else:
        rows = guess_rows(s for s in states if s not in (initial, handoff))
    return FsmGraph(states, initial, tuple(machine_transitions(machine)), rows, handoff)


def machine_transitions(machine: type[StateMachine]) -> Iterable[Transition]:
    """Every (source, event, target) of a python-statemachine class, with the names of its conditions."""
    for state in machine.states:  # type: ignore[attr-defined]
        for transition in state.transitions:
            target = transition.target if transition.target is not None else transition.source  # internal: stays
            conditions = tuple(_condition_text(c) for c in transition.cond)
            for event in transition.events:
                yield Transition(str(transition.source.id), str(event), str(target.id), conditions)


def _condition_text(spec: Any) -> str:
    func = getattr(spec, "func", spec)
    name = func if isinstance(func, str) else getattr(func, "__name__", repr(func))
    return name if getattr(spec, "expected_value", True) else f"not {name}"


def guess_rows(states: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """Rows for states that no definition groups: by the task their name starts with, in the given order."""
    rows: dict[str, list[str]] = {}
    for state in states:
        key = state
        for marker in ("_need_", "_confirm"):
            if marker in state:
                key = state.split(marker)[0]
                break
        rows.setdefault(key, []).append(state)
    return tuple(tuple(r) for r in rows.values())


# -- grouping what repeats ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grouped:
    """The transitions sorted into what the picture shows once (see the module's docstring)."""

    everywhere_loops: tuple[str, ...]  # actions every open state loops on
    loops: dict[str, tuple[str, ...]]  # state -> the other actions that keep it
    from_any: dict[str, tuple[str, ...]]  # target -> actions that lead to it from any open state
    arrows: dict[tuple[str, str], tuple[str, ...]]  # (source, target) -> the remaining actions


def group(graph: FsmGraph) -> Grouped:
    open_states = set(graph.open_states)
    sources: dict[tuple[str, str], set[str]] = {}
    for t in graph.transitions:
        sources.setdefault((t.action, t.target), set()).add(t.source)
    from_any: dict[str, list[str]] = {}
    covered: set[tuple[str, str, str]] = set()
    for (action, target), srcs in sources.items():
        others = open_states - {target}
        if len(others) >= 2 and others <= srcs:
            _add(from_any, target, action)
            covered.update((s, action, target) for s in srcs & open_states)
    loops: dict[str, list[str]] = {}
    arrows: dict[tuple[str, str], list[str]] = {}
    for t in graph.transitions:
        if (t.source, t.action, t.target) in covered:
            continue
        if t.source == t.target:
            _add(loops, t.source, t.action)
        else:
            _add(arrows, (t.source, t.target), t.action)
    everywhere: tuple[str, ...] = ()
    if len(open_states) >= 2:
        first = loops.get(graph.open_states[0], [])
        everywhere = tuple(a for a in first if all(a in loops.get(s, ()) for s in open_states))
    own = {s: tuple(a for a in acts if not (s in open_states and a in everywhere)) for s, acts in loops.items()}
    return Grouped(everywhere, {s: a for s, a in own.items() if a},
                   {k: tuple(v) for k, v in from_any.items()}, {k: tuple(v) for k, v in arrows.items()})


def _add(into: dict[Any, list[str]], key: Any, action: str) -> None:
    bucket = into.setdefault(key, [])
    if action not in bucket:
        bucket.append(action)


# -- the text summary --------------------------------------------------------------------------------------------


def describe(graph: FsmGraph) -> str:
    """Per state, the actions it allows and where each goes (with the conditions that must hold)."""
    marks = {graph.initial: "initial"}
    if graph.handoff:
        marks[graph.handoff] = "hand-off"
    actions = len({t.action for t in graph.transitions})
    lines = [f"{len(graph.states)} states, {actions} actions, {len(graph.transitions)} transitions"]
    for state in graph.states:
        lines.append("")
        lines.append(f"{state}" + (f"  ({marks[state]})" if state in marks else ""))
        outgoing = [t for t in graph.transitions if t.source == state]
        width = max((len(t.action) for t in outgoing), default=0)
        seen: set[str] = set()
        for t in outgoing:
            if t.action in seen:
                continue
            seen.add(t.action)
            for i, same in enumerate(x for x in outgoing if x.action == t.action):
                when = f"  if {', '.join(same.conditions)}" if same.conditions else ""
                name = t.action if i == 0 else ""
                lines.append(f"  {name:<{width}} -> {same.target}{when}")
        if not outgoing:
            lines.append("  (no actions: a dead end)")
    return "\n".join(lines)


# -- layout ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A rectangle in layout units, ``(x, y)`` its lower-left corner (y grows upwards, as in matplotlib)."""

    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def top(self) -> float:
        return self.y + self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.width / 2, self.y + self.height / 2)

    def overlaps(self, other: Box) -> bool:
        return self.x < other.right and other.x < self.right and self.y < other.top and other.y < self.top


@dataclass(frozen=True)
class Text:
    """Lines of monospace text whose top-left corner is ``(x, top)``."""

    x: float
    top: float
    lines: tuple[str, ...]

    @property
    def box(self) -> Box:
        height = len(self.lines) * LINE
        return Box(self.x, self.top - height, max((len(line) for line in self.lines), default=0), height)


@dataclass(frozen=True)
class Node:
    state: str
    box: Box
    lines: tuple[str, ...]  # the state's name, its marks, the actions that keep it
    initial: bool = False
    handoff: bool = False


@dataclass(frozen=True)
class Feed:
    """Actions allowed from any open state into ``target``: a dashed line from the bus, then down into the box."""

    target: str
    label: Text
    path: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Arrow:
    """Actions from one state to another that no feed covers. One back to the initial state (a confirmation's
    yes or no) runs along the gap under its row and up the empty column under the initial state, so it crosses no
    state; any other is a gently curved arrow between the two boxes."""

    source: str
    target: str
    actions: tuple[str, ...]
    label: Text
    rad: float = 0.0  # matplotlib's arc3 curvature, for a curved arrow
    path: tuple[tuple[float, float], ...] = ()  # the corners of a routed arrow, from the source's box to the target's


@dataclass(frozen=True)
class Layout:
    width: float
    height: float
    nodes: tuple[Node, ...]
    feeds: tuple[Feed, ...]
    arrows: tuple[Arrow, ...]
    bus: tuple[tuple[float, float], tuple[float, float]] | None  # from its top (under the caption) down
    title: Text | None
    caption: Text | None  # the bus's: "from any open state"
    legend: Text

    def node(self, state: str) -> Node:
        return next(n for n in self.nodes if n.state == state)


def _wrap(prefix: str, actions: Sequence[str], width: int = WRAP) -> list[str]:
    return textwrap.wrap(prefix + ", ".join(actions), width=max(width, len(prefix) + 12),
                         subsequent_indent=" " * len(prefix), break_on_hyphens=False, break_long_words=False)


def place(graph: FsmGraph) -> dict[str, tuple[int, int]]:
    """State -> (row, column): the initial state at (0, 0), each task's states in a row from column 1 (the first
    task's beside the initial state), the hand-off state alone in the last row."""
    placed: dict[str, tuple[int, int]] = {graph.initial: (0, 0)}
    rows = [[s for s in task_row if s != graph.handoff] for task_row in graph.rows]
    rows += [[s] for s in graph.states if s != graph.handoff and not any(s in r for r in rows)]  # hand-made flows
    row = 0
    for cells in rows:
        cells = [s for s in cells if s not in placed]
        if cells:
            placed.update({state: (row, col) for col, state in enumerate(cells, start=1)})
            row += 1
    if graph.handoff:
        placed[graph.handoff] = (max(row, 1), 1)
    return placed


def layout(graph: FsmGraph, title: str = "") -> Layout:
    """Place every state and label (pure: the sizes come from the character counts)."""
    grouped = group(graph)
    placed = place(graph)
    n_rows = 1 + max(row for row, _ in placed.values())

    def node_lines(state: str) -> list[str]:
        marks = [m for m, on in (("[initial]", state == graph.initial), ("[hand-off]", state == graph.handoff)) if on]
        loops = grouped.loops.get(state, ())
        return [state, *([" ".join(marks)] if marks else []), *(_wrap("loops: ", loops) if loops else [])]

    feed_lines = {target: _wrap("", actions) for target, actions in grouped.from_any.items()}
    sizes = {s: (max(len(x) for x in node_lines(s)) + 2 * PAD_X, len(node_lines(s)) * LINE + 2 * PAD_Y)
             for s in placed}
    columns = 1 + max(col for _, col in placed.values())
    col_width = [0.0] * columns
    for state, (_, col) in placed.items():
        label = max((len(x) for x in feed_lines.get(state, [])), default=0)
        col_width[col] = max(col_width[col], sizes[state][0], label)
    # a curved arrow between two columns has its label half-way: widen the gaps to hold the widest one
    curved = [acts for (s, t), acts in grouped.arrows.items() if placed[s][1] != placed[t][1] and t != graph.initial]
    gap = max([GAP_X, *(max(len(x) for x in _wrap("", acts, ARROW_WRAP)) + 4.0 for acts in curved)])
    col_x = [MARGIN + INITIAL_MARK]
    for width in col_width[:-1]:
        col_x.append(col_x[-1] + width + gap)
    bus_x = col_x[0] + col_width[0] + gap / 2

    # vertical placement, top-down (converted to y-up at the end)
    cursor = MARGIN
    title_at = caption_at = None
    if title:
        title_at = cursor
        cursor += LINE * 1.5
    caption = "from any open state"
    if grouped.from_any:
        caption_at = cursor
        cursor += LINE
    rows_of: dict[int, list[str]] = {}
    for state, (row, _) in placed.items():
        rows_of.setdefault(row, []).append(state)
    node_top: dict[str, float] = {}
    returns: list[tuple[str, float, float, tuple[str, ...]]] = []  # (source, line y, label top, label)
    feeds_top: list[tuple[str, float, float]] = []  # (target, label top, line y)
    for row in range(n_rows):
        members = rows_of.get(row, [])
        label_lines = max((len(feed_lines[s]) for s in members if s in feed_lines), default=0)
        line_y = cursor + label_lines * LINE + 0.5
        top = line_y + DROP if label_lines else cursor + 0.5
        top = max(top, cursor + _headroom(grouped, placed, row, col_x, graph.initial))
        for state in members:
            node_top[state] = top
            if state in feed_lines:
                feeds_top.append((state, cursor, line_y))
        cursor = top + max((sizes[s][1] for s in members), default=0.0)
        back = sorted((s for s in members if (s, graph.initial) in grouped.arrows and s != graph.initial),
                      key=lambda s: -placed[s][1])
        if back:  # the arrows back to the initial state: one line each under the row, then their labels
            label_top = cursor + 1.0 + len(back) * 0.8
            for k, state in enumerate(back):
                lines = tuple(_wrap("", grouped.arrows[(state, graph.initial)], WRAP))
                returns.append((state, cursor + 1.0 + k * 0.8, label_top, lines))
                label_top += len(lines) * LINE
            cursor = label_top
        cursor += GAP_Y
    legend: list[str] = []
    if grouped.everywhere_loops:
        legend += _wrap("every open state also loops on: ", grouped.everywhere_loops, 100)
    if grouped.from_any:
        legend.append("dashed: actions allowed from any open state (all but the hand-off state) into the state below")
    legend.append("solid: actions from one state to another; loops: actions that keep the state")
    height = cursor + len(legend) * LINE + MARGIN
    right = max(col_x[c] + col_width[c] for c in range(columns))
    caption_x = max(MARGIN, bus_x - len(caption) / 2)
    width = max(right, MARGIN + len(title), caption_x + len(caption), MARGIN + max(len(x) for x in legend)) + MARGIN

    def up(y: float) -> float:
        return height - y

    nodes = []
    for state in graph.states:
        if state not in placed:
            continue
        w, h = sizes[state]
        x = col_x[placed[state][1]]
        nodes.append(Node(state, Box(x, up(node_top[state] + h), w, h), tuple(node_lines(state)),
                          initial=state == graph.initial, handoff=state == graph.handoff))
    boxes = {n.state: n.box for n in nodes}
    feeds = []
    for target, label_top, line_y in feeds_top:
        box = boxes[target]
        cx = box.center[0]
        feeds.append(Feed(target, Text(box.x, up(label_top), tuple(feed_lines[target])),
                          ((bus_x, up(line_y)), (cx, up(line_y)), (cx, box.top))))
    bus = None
    if feeds and caption_at is not None:
        bus = ((bus_x, up(caption_at + LINE + 0.4)), (bus_x, min(f.path[0][1] for f in feeds)))
    arrows = []
    routed = {source for source, *_ in returns}
    start = boxes[graph.initial]
    for source, line_y, label_top, lines in returns:
        box = boxes[source]
        x = max(bus_x + 1.0, box.center[0] - 1.0 - max(len(line) for line in lines))
        path = ((box.center[0], box.y), (box.center[0], up(line_y)), (start.center[0], up(line_y)),
                (start.center[0], start.y))
        arrows.append(Arrow(source, graph.initial, grouped.arrows[(source, graph.initial)],
                            Text(x, up(label_top), lines), path=path))
    arrows += [_arrow(boxes[s], boxes[t], s, t, actions) for (s, t), actions in grouped.arrows.items()
               if not (t == graph.initial and s in routed)]
    return Layout(width, height, tuple(nodes), tuple(feeds), tuple(arrows), bus,
                  title=Text(MARGIN, up(title_at), (title,)) if title_at is not None else None,
                  caption=Text(caption_x, up(caption_at), (caption,)) if caption_at is not None else None,
                  legend=Text(MARGIN, up(cursor), tuple(legend)))


def _headroom(grouped: Grouped, placed: dict[str, tuple[int, int]], row: int, col_x: Sequence[float],
              initial: str) -> float:
    """Room above a row for the curved arrows between two of its states that bend upwards (left to right), and
    their labels: an arc3 curve rises a tenth of its length above the line between the two boxes."""
    rises = [0.1 * abs(col_x[placed[t][1]] - col_x[placed[s][1]]) + LINE + 1.0
             for (s, t) in grouped.arrows
             if placed[s][0] == placed[t][0] == row and placed[t][1] > placed[s][1] and t != initial]
    return max(rises, default=0.0)


def _arrow(a: Box, b: Box, source: str, target: str, actions: tuple[str, ...]) -> Arrow:
    """A curved arrow whose label sits on the outer side of its bend, so the labels of a pair of arrows between the
    same two states (one each way, bending to opposite sides) do not cover each other."""
    (x1, y1), (x2, y2) = a.center, b.center
    rad = -0.2  # left to right bends up, right to left down (where the routed arrows back to the start run)
    bend_x, bend_y = 0.5 * rad * (y2 - y1), -0.5 * rad * (x2 - x1)  # arc3 bends towards (dy, -dx) * rad
    mx, my = (x1 + x2) / 2 + bend_x, (y1 + y2) / 2 + bend_y  # a quadratic Bezier's midpoint
    lines = tuple(_wrap("", actions, ARROW_WRAP))
    width, height = max(len(x) for x in lines), len(lines) * LINE
    if abs(bend_x) >= abs(bend_y):  # a mostly vertical arrow: the label beside it
        x, top = (mx + 0.8 if bend_x > 0 else mx - 0.8 - width), my + height / 2
    else:  # a mostly horizontal one: above or below it
        x, top = mx - width / 2, (my + 0.3 + height if bend_y > 0 else my - 0.3)
    return Arrow(source, target, actions, Text(x, top, lines), rad=rad)


# -- drawing -----------------------------------------------------------------------------------------------------

_INK, _FEED = "#1f2937", "#6b7280"
_FILL, _EDGE = "#eef3fb", "#3b5b92"
_HANDOFF_FILL, _HANDOFF_EDGE = "#fde8d7", "#c2571a"


def render(drawing: Layout, path: Path, *, font_size: float = 9.0, dpi: int = 150) -> None:
    """Draw ``drawing`` to ``path`` (``.png`` or ``.svg``, by its extension). SVG text stays text, so the file
    can be searched and its labels selected."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot draw to {path.name}: the extension must be one of {', '.join(FORMATS)}")
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

    inch = CHAR_EM * font_size / 72  # one layout unit, in inches
    style: dict[str, Any] = {"svg.fonttype": "none", "font.family": "monospace",
             "font.monospace": ["DejaVu Sans Mono", "Bitstream Vera Sans Mono", "monospace"]}
    with matplotlib.rc_context(style):  # type: ignore[arg-type]  # rc keys are typed as Literals
        fig = Figure(figsize=(drawing.width * inch, drawing.height * inch))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, drawing.width)
        ax.set_ylim(0, drawing.height)
        ax.axis("off")

        def write(text: Text, color: str = _INK, bold_first: bool = False, background: bool = False) -> None:
            for i, line in enumerate(text.lines):
                ax.text(text.x, text.top - (i + 0.5) * LINE, line, fontsize=font_size, color=color, va="center",
                        ha="left", fontweight="bold" if bold_first and i == 0 else "normal",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5} if background else None,
                        zorder=4)

        patches = {}
        for node in drawing.nodes:
            b = node.box
            face, edge = (_HANDOFF_FILL, _HANDOFF_EDGE) if node.handoff else (_FILL, _EDGE)
            patch = FancyBboxPatch((b.x, b.y), b.width, b.height, boxstyle="round,pad=0,rounding_size=1.2",
                                   facecolor=face, edgecolor=edge, linewidth=2.4 if node.initial else 1.2,
                                   linestyle="--" if node.handoff else "-", zorder=2)
            ax.add_patch(patch)
            patches[node.state] = patch
            write(Text(b.x + PAD_X, b.top - PAD_Y, node.lines), bold_first=True)
            if node.initial:  # UML's initial pseudo-state: a dot with an arrow into the state
                cy = b.center[1]
                ax.add_patch(Circle((b.x - INITIAL_MARK + 1.2, cy), 0.8, color=_INK, zorder=3))
                ax.add_patch(FancyArrowPatch((b.x - INITIAL_MARK + 2.0, cy), (b.x, cy), arrowstyle="-|>",
                                             mutation_scale=10, color=_INK, zorder=3))
        if drawing.bus is not None:
            (x0, y0), (x1, y1) = drawing.bus
            ax.add_line(Line2D([x0, x1], [y0, y1], color=_FEED, linestyle="--", linewidth=1.2, zorder=1))
            ax.add_patch(Circle((x0, y0), 0.6, facecolor="white", edgecolor=_FEED, zorder=3))
        for feed in drawing.feeds:
            (bx, by), (cx, cy), (tx, ty) = feed.path
            ax.add_line(Line2D([bx, cx], [by, cy], color=_FEED, linestyle="--", linewidth=1.0, zorder=1))
            ax.add_patch(FancyArrowPatch((cx, cy), (tx, ty), arrowstyle="-|>", mutation_scale=10, color=_FEED,
                                         linestyle="--", linewidth=1.0, shrinkA=0, shrinkB=0, zorder=3))
            write(feed.label, color=_FEED)
        for arrow in drawing.arrows:
            if arrow.path:
                *lines, (x0, y0), (x1, y1) = arrow.path
                xs, ys = zip(*lines, (x0, y0), strict=True)
                ax.add_line(Line2D(xs, ys, color=_INK, linewidth=1.1, zorder=3))
                ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=11, color=_INK,
                                             linewidth=1.1, shrinkA=0, shrinkB=0, zorder=3))
                write(arrow.label)
                continue
            source, target = drawing.node(arrow.source).box, drawing.node(arrow.target).box
            ax.add_patch(FancyArrowPatch(source.center, target.center, patchA=patches[arrow.source],
                                         patchB=patches[arrow.target], connectionstyle=f"arc3,rad={arrow.rad}",
                                         arrowstyle="-|>", mutation_scale=11, color=_INK, linewidth=1.1, zorder=3))
            write(arrow.label, background=True)
        if drawing.title is not None:
            write(drawing.title, bold_first=True)
        if drawing.caption is not None:
            write(drawing.caption, color=_FEED)
        write(drawing.legend, color=_FEED)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=suffix[1:], dpi=dpi, facecolor="white")

"""Layout of a plan's picture, computed here without graphviz (`_svg` draws it).

Layout (left to right): the request, then one column group per *stage layer*, then the response.
A stage's layer is the longest path from the request in the graph of stages (stages are
contiguous in topological order, so that graph has no cycle); stages of one layer are stacked and
share its width. Inside a stage box, nodes are layered the same way by the longest path among the
stage's own nodes. Every edge (one per pair of nodes, labelled with all the columns it carries)
passes through its label, which sits in the gap right after its source; labels of one gap are
packed so they never overlap. An edge that skips a column goes around below everything, so it
crosses no node. Text widths are estimated for a monospace font, so the output depends on nothing
but the plan: the same plan gives byte-identical SVG. Over ~350 lines because placing, packing
and routing are one algorithm over shared geometry, read best in one place.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from graphops.diagram._mermaid import _stage_label
from graphops.graph import FeatureLookup, ModelNode
from graphops.planner import Plan, Stage

_CHAR = 0.6  # advance of a monospace glyph, in em
LINE = 1.3  # line height, in em
TITLE, HEADER, NAME, DETAIL, LABEL = 14.0, 11.0, 12.0, 10.5, 10.5
MARGIN = 16.0  # around the picture
_PAD = 10.0  # inside a stage box, around its nodes
HEAD = 20.0  # stage box header band (also left empty at the bottom, so nodes sit centred)
_VGAP = 16.0  # between stacked nodes and between stacked stage boxes
_LGAP = 6.0  # between stacked edge labels
_EDGE_ROOM = 22.0  # horizontal room on each side of the labels of a gap, for the curves
_MIN_GAP = 48.0
_LANE = 5.0  # distance between parallel detour lines
_RADIUS = 6.0
CAP = 5.0  # half height of a cylinder's ellipse
_WRAP = 34  # characters per line of the request/response field lists


def _text_width(text: str, size: float) -> float:
    """Width of ``text`` in a monospace font; wide (CJK) characters take two cells."""
    cells = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return cells * _CHAR * size


def num(x: float) -> str:
    """A coordinate with at most one decimal, never ``-0``: stable across platforms."""
    text = f"{x:.1f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _wrap(words: list[str], width: int) -> list[str]:
    """Join ``words`` with ", " into lines of about ``width`` characters."""
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 2 + len(word) <= width:
            lines[-1] += f", {word}"
        else:
            if lines:
                lines[-1] += ","
            lines.append(word)
    return lines or ["-"]


@dataclass
class Rect:
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def overlaps(self, other: Rect) -> bool:
        """True when the two rectangles share more than an edge."""
        return (
            self.x < other.right
            and other.x < self.right
            and self.y < other.bottom
            and other.y < self.bottom
        )


@dataclass
class Item:
    """A drawn node: the request, the response, or a node of the graph."""

    key: str
    shape: str  # request, response, node, model, lookup
    lines: list[str]
    column: int
    stage: int | None  # index into plan.stages
    rect: Rect = field(default_factory=Rect)


@dataclass
class Edge:
    """All columns flowing from one item to another."""

    source: str
    target: str
    columns: list[str]
    label: Rect = field(default_factory=Rect)
    detour: bool = False  # skips a column: drawn around below everything
    start: float = 0.0  # y of the port on the source
    end: float = 0.0  # y of the port on the target
    path: str = ""


@dataclass
class Layout:
    width: float
    height: float
    title: str
    items: dict[str, Item]
    boxes: list[tuple[Stage, Rect]]
    edges: list[Edge]


def _item_size(item: Item) -> tuple[float, float]:
    first = _text_width(item.lines[0], NAME)
    rest = [_text_width(line, DETAIL) for line in item.lines[1:]]
    width = max([first, *rest]) + (32 if item.shape == "model" else 24)
    height = NAME * LINE + DETAIL * LINE * len(rest) + 14
    if item.shape == "lookup":
        height += 2 * CAP
    return max(width, 64.0), max(height, 34.0)


def _label_size(columns: list[str]) -> tuple[float, float]:
    width = max(_text_width(c, LABEL) for c in columns) + 10
    return width, LABEL * LINE * len(columns) + 6


def _items(plan: Plan) -> tuple[dict[str, Item], list[int], list[int | None]]:
    """Every item with its column, each stage's layer, and each column's layer (None: ends)."""
    g = plan.graph
    stage_index = {n.name: i for i, s in enumerate(plan.stages) for n in s.nodes}
    layer: list[int] = []
    inner: dict[str, int] = {}
    for i, stage in enumerate(plan.stages):
        before = [
            stage_index[p.name]
            for n in stage.nodes
            for p in g.upstream(n)
            if stage_index[p.name] != i
        ]
        layer.append(1 + max((layer[j] for j in before), default=0))
        for n in stage.nodes:
            inside = [inner[p.name] for p in g.upstream(n) if stage_index[p.name] == i]
            inner[n.name] = 1 + max(inside, default=-1)
    depth = {k: 0 for k in layer}
    for i, stage in enumerate(plan.stages):
        deepest = 1 + max(inner[n.name] for n in stage.nodes)
        depth[layer[i]] = max(depth[layer[i]], deepest)
    start: dict[int, int] = {}
    column = 1
    group_of: list[int | None] = [None]
    for k in sorted(depth):
        start[k], column = column, column + depth[k]
        group_of += [k] * depth[k]
    group_of.append(None)
    items = {
        "request": Item(
            "request", "request", ["request", *_wrap(list(g.request_fields), _WRAP)], 0, None
        )
    }
    for i, stage in enumerate(plan.stages):
        for n in stage.nodes:
            if isinstance(n, ModelNode):
                shape, lines = "model", [n.name, str(n.uri)]
            elif isinstance(n, FeatureLookup):
                shape, lines = "lookup", [n.name, f"features: {n.table.name}"]
            else:
                shape, lines = "node", [n.name]
            items[n.name] = Item(n.name, shape, lines, start[layer[i]] + inner[n.name], i)
    items["response"] = Item(
        "response", "response", ["response", *_wrap(list(g.response_fields), _WRAP)], column, None
    )
    for item in items.values():
        item.rect.w, item.rect.h = _item_size(item)
    return items, layer, group_of


def _edges(plan: Plan, items: dict[str, Item]) -> list[Edge]:
    g = plan.graph
    flows = [(c, n.name) for n in g.order for c in n.inputs]
    flows += [(c, "response") for c in g.response_fields]
    edges: dict[tuple[str, str], Edge] = {}
    for column, target in flows:
        producer = g.producer(column)
        source = producer.name if producer else "request"
        edge = edges.setdefault((source, target), Edge(source, target, []))
        if column not in edge.columns:
            edge.columns.append(column)
    for edge in edges.values():
        edge.label.w, edge.label.h = _label_size(edge.columns)
        edge.detour = items[edge.target].column > items[edge.source].column + 1
    return list(edges.values())


def _stack(rects: list[Rect], gap: float) -> float:
    return sum(r.h for r in rects) + gap * max(len(rects) - 1, 0)


def _pack(labels: list[tuple[float, Rect]], top: float, bottom: float) -> None:
    """Place labels near their wanted centre ``y``, in that order, apart, between the bounds."""
    labels = sorted(labels, key=lambda pair: pair[0])
    cursor = top
    for wanted, rect in labels:
        rect.y = max(wanted - rect.h / 2, cursor)
        cursor = rect.bottom + _LGAP
    limit = bottom
    for _, rect in reversed(labels):
        rect.y = min(rect.y, limit - rect.h)
        limit = rect.y - _LGAP


def layout(plan: Plan) -> Layout:
    """Compute every rectangle and path of the picture."""
    items, layer, group_of = _items(plan)
    edges = _edges(plan, items)
    last = len(group_of) - 1  # the response's column
    layers: dict[int, list[int]] = {}  # stage layer -> its stages, in plan order
    for i, k in enumerate(layer):
        layers.setdefault(k, []).append(i)
    cols_of = {k: [c for c in range(last + 1) if group_of[c] == k] for k in layers}
    at = {c: [it for it in items.values() if it.column == c] for c in range(last + 1)}
    leaving = {c: [e for e in edges if items[e.source].column == c] for c in range(last)}
    col_w = {c: max(it.rect.w for it in at[c]) for c in range(last + 1)}
    downs = {c: [e for e in leaving[c] if e.detour] for c in range(last)}
    ups = {
        c: [e for e in edges if e.detour and items[e.target].column == c + 1] for c in range(last)
    }

    # Gap c (after column c): curves | labels | lanes down | lanes up | curves.
    label_w = {c: max((e.label.w for e in leaving[c]), default=0.0) for c in range(last)}
    lanes_w = {
        c: (10 + _LANE * len(downs[c]) if downs[c] else 0.0)
        + (6 + _LANE * len(ups[c]) if ups[c] else 0.0)
        for c in range(last)
    }
    gap_w = {c: max(2 * _EDGE_ROOM + label_w[c] + lanes_w[c], _MIN_GAP) for c in range(last)}
    pad = {}  # per stage layer: a header wider than the columns widens the padding
    for k, stages in layers.items():
        cols = cols_of[k]
        inside = sum(col_w[c] for c in cols) + sum(gap_w[c] for c in cols[:-1])
        header = max(_text_width(_stage_label(plan.stages[i]), HEADER) for i in stages) + 16
        pad[k] = _PAD + max(header - inside - 2 * _PAD, 0.0) / 2
    col_x, gap_x = {}, {}
    x = MARGIN
    for c in range(last + 1):
        group = group_of[c]
        if group is not None and group_of[c - 1] != group:
            x += pad[group]
        col_x[c] = x
        x += col_w[c]
        if group is not None and group_of[c + 1] != group:
            x += pad[group]
        if c < last:
            gap_x[c] = x
            x += gap_w[c]
    width = x + MARGIN

    def inner(c: int) -> bool:  # gap c lies inside a stage layer
        return group_of[c] is not None and group_of[c] == group_of[c + 1]

    # Heights: a stage box holds its node columns and the labels of its inner gaps.
    content_h = []
    for i in range(len(plan.stages)):
        cols = cols_of[layer[i]]
        stacks = [_stack([it.rect for it in at[c] if it.stage == i], _VGAP) for c in cols]
        stacks += [
            _stack([e.label for e in leaving[c] if items[e.source].stage == i], _LGAP)
            for c in cols
            if inner(c)
        ]
        content_h.append(max(stacks))
    box_h = [h + 2 * (HEAD + _PAD) for h in content_h]
    layer_h = {k: sum(box_h[i] for i in s) + _VGAP * (len(s) - 1) for k, s in layers.items()}
    heights = [items["request"].rect.h, items["response"].rect.h, *layer_h.values()]
    heights += [_stack([e.label for e in leaving[c]], _LGAP) for c in range(last) if not inner(c)]
    top = MARGIN + TITLE * LINE + 8
    height = max(heights)
    middle = top + height / 2

    # Positions.
    for key in ("request", "response"):
        it = items[key]
        it.rect.x = col_x[it.column] + (col_w[it.column] - it.rect.w) / 2
        it.rect.y = middle - it.rect.h / 2
    boxes: list[Rect] = [Rect() for _ in plan.stages]
    for k, stages in layers.items():
        cols = cols_of[k]
        y = middle - layer_h[k] / 2
        for i in stages:
            box = boxes[i]
            box.x, box.y, box.h = col_x[cols[0]] - pad[k], y, box_h[i]
            box.w = col_x[cols[-1]] + col_w[cols[-1]] + pad[k] - box.x
            content = box.y + HEAD + _PAD
            for c in cols:
                stacked = [it for it in at[c] if it.stage == i]
                cy = content + (content_h[i] - _stack([it.rect for it in stacked], _VGAP)) / 2
                for it in stacked:
                    it.rect.x = col_x[c] + (col_w[c] - it.rect.w) / 2
                    it.rect.y, cy = cy, cy + it.rect.h + _VGAP
            y += box_h[i] + _VGAP
    _ports(items, edges)
    for c in range(last):
        for e in leaving[c]:
            e.label.x = gap_x[c] + _EDGE_ROOM
        if inner(c):  # labels stay inside their own stage box
            group = group_of[c]
            assert group is not None  # an inner gap lies inside a stage layer
            for i in layers[group]:
                content = boxes[i].y + HEAD + _PAD
                own = [e for e in leaving[c] if items[e.source].stage == i]
                _pack([(_wanted(e), e.label) for e in own], content, content + content_h[i])
        else:
            _pack([(_wanted(e), e.label) for e in leaving[c]], top, top + height)

    # Paths; detours run in lanes below everything, shorter spans nearer the picture.
    for e in edges:
        if not e.detour:
            e.path = _short_path(e, items, col_x, col_w)
    detours = sorted(
        (e for e in edges if e.detour),
        key=lambda e: items[e.target].column - items[e.source].column,
    )
    bottom = top + height + 8
    for n, e in enumerate(detours):
        src, dst = items[e.source].column, items[e.target].column - 1
        down_x = gap_x[src] + _EDGE_ROOM + label_w[src] + 10 + _LANE * downs[src].index(e)
        up_x = gap_x[dst] + _EDGE_ROOM + label_w[dst] + lanes_w[dst] - _LANE * len(ups[dst])
        up_x += _LANE * ups[dst].index(e)
        lane = bottom + 2 * _LANE * (n + 1)
        e.path = _detour_path(e, items, col_x, col_w, down_x, up_x, lane)
    if detours:
        bottom += 2 * _LANE * (len(detours) + 1)
    g = plan.graph
    count = len(plan.stages)
    title = (
        f"{g.name} {g.version} · {count} stage{'' if count == 1 else 's'}"
        f" · {'fused' if plan.fused else 'unfused'}"
    )
    return Layout(
        width, bottom + MARGIN - 8, title, items, list(zip(plan.stages, boxes, strict=True)), edges
    )


def _wanted(edge: Edge) -> float:
    """Where a label would like its centre: halfway between the ports, or level with the source."""
    return edge.start if edge.detour else (edge.start + edge.end) / 2


def _ports(items: dict[str, Item], edges: list[Edge]) -> None:
    """Spread the edges leaving (entering) an item over its right (left) side, ordered by y."""
    below = float("inf")  # detours leave and arrive from below
    for item in items.values():
        centre = item.rect.y + item.rect.h / 2
        out = [e for e in edges if e.source == item.key]
        out.sort(key=lambda e: below if e.detour else items[e.target].rect.y)
        into = [e for e in edges if e.target == item.key]
        into.sort(key=lambda e: below if e.detour else items[e.source].rect.y)
        for group, attr in ((out, "start"), (into, "end")):
            step = min(8.0, (item.rect.h - 2 * _RADIUS) / max(len(group), 1))
            for n, e in enumerate(group):
                setattr(e, attr, centre + (n - (len(group) - 1) / 2) * step)


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    """A horizontal S-curve from the current point (x1, y1) to (x2, y2)."""
    mid = (x1 + x2) / 2
    return f"C {num(mid)},{num(y1)} {num(mid)},{num(y2)} {num(x2)},{num(y2)}"


def _leave(
    e: Edge, items: dict[str, Item], col_x: dict[int, float], col_w: dict[int, float]
) -> tuple[str, float]:
    """Path start: out of the source and straight on to its column's edge (no curve crosses a node)."""
    src = items[e.source]
    edge = col_x[src.column] + col_w[src.column]
    return f"M {num(src.rect.right)},{num(e.start)} L {num(edge)},{num(e.start)}", edge


def _short_path(
    e: Edge, items: dict[str, Item], col_x: dict[int, float], col_w: dict[int, float]
) -> str:
    """Source -> its label -> target, curving only in the gap between their columns."""
    start, sx = _leave(e, items, col_x, col_w)
    dst = items[e.target]
    tx, ly = col_x[dst.column], e.label.y + e.label.h / 2
    return (
        f"{start} {_curve(sx, e.start, e.label.x, ly)} "
        f"L {num(e.label.right)},{num(ly)} {_curve(e.label.right, ly, tx, e.end)} "
        f"L {num(dst.rect.x)},{num(e.end)}"
    )


def _detour_path(
    e: Edge,
    items: dict[str, Item],
    col_x: dict[int, float],
    col_w: dict[int, float],
    down: float,
    up: float,
    lane: float,
) -> str:
    """Source -> label -> down to its lane below everything -> along -> up -> into the target."""
    start, sx = _leave(e, items, col_x, col_w)
    tx = items[e.target].rect.x
    ly, r = e.label.y + e.label.h / 2, _RADIUS
    return " ".join(
        [
            f"{start} {_curve(sx, e.start, e.label.x, ly)}",
            f"L {num(down - r)},{num(ly)} Q {num(down)},{num(ly)} {num(down)},{num(ly + r)}",
            f"L {num(down)},{num(lane - r)} Q {num(down)},{num(lane)} {num(down + r)},{num(lane)}",
            f"L {num(up - r)},{num(lane)} Q {num(up)},{num(lane)} {num(up)},{num(lane - r)}",
            f"L {num(up)},{num(e.end + r)} Q {num(up)},{num(e.end)} {num(up + r)},{num(e.end)}",
            f"L {num(tx)},{num(e.end)}",
        ]
    )

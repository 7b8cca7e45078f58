"""SVG picture of a plan: the same drawing as the Mermaid diagram, laid out here without graphviz.

Layout (left to right): the request, then one column group per *stage layer*, then the response.
A stage's layer is the longest path from the request in the graph of stages (stages are
contiguous in topological order, so that graph has no cycle); stages of one layer are stacked and
share its width. Inside a stage box, nodes are layered the same way by the longest path among the
stage's own nodes. Every edge (one per pair of nodes, labelled with all the columns it carries)
passes through its label, which sits in the gap right after its source; labels of one gap are
packed so they never overlap. An edge that skips a column goes around below everything, so it
crosses no node. Text widths are estimated for a monospace font, so the output depends on nothing
but the plan: the same plan gives byte-identical SVG.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from html import escape

from graphops.graph import FeatureLookup, ModelNode
from graphops.plan._diagram import _stage_label
from graphops.plan._planner import Boundary, Plan, Stage

_FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
_CHAR = 0.6  # advance of a monospace glyph, in em
_LINE = 1.3  # line height, in em
_TITLE, _HEADER, _NAME, _DETAIL, _LABEL = 14.0, 11.0, 12.0, 10.5, 10.5
_MARGIN = 16.0  # around the picture
_PAD = 10.0  # inside a stage box, around its nodes
_HEAD = 20.0  # stage box header band (also left empty at the bottom, so nodes sit centred)
_VGAP = 16.0  # between stacked nodes and between stacked stage boxes
_LGAP = 6.0  # between stacked edge labels
_EDGE_ROOM = 22.0  # horizontal room on each side of the labels of a gap, for the curves
_MIN_GAP = 48.0
_LANE = 5.0  # distance between parallel detour lines
_RADIUS = 6.0
_CAP = 5.0  # half height of a cylinder's ellipse
_WRAP = 34  # characters per line of the request/response field lists

# Stage box fill and stroke by kind; node fill and stroke by shape.
_STAGE_COLOURS = {
    Boundary.CPU: ("#eef4fb", "#6b8fb8"),
    Boundary.MODEL: ("#fdf3e6", "#d08a2e"),
    Boundary.GPU: ("#f4eefb", "#8e6bbf"),
    Boundary.EXPLICIT: ("#edf7f0", "#4f9a68"),
    Boundary.UNFUSED: ("#f4f4f4", "#8a8a8a"),
}
_NODE_COLOURS = {
    "node": ("#ffffff", "#4a4a4a"),
    "model": ("#fff8ee", "#b06d14"),
    "lookup": ("#f0f9f3", "#3f8a5a"),
    "request": ("#f2f2f2", "#555555"),
    "response": ("#f2f2f2", "#555555"),
}


def _text_width(text: str, size: float) -> float:
    """Width of ``text`` in a monospace font; wide (CJK) characters take two cells."""
    cells = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return cells * _CHAR * size


def _num(x: float) -> str:
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
class _Rect:
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

    def overlaps(self, other: _Rect) -> bool:
        """True when the two rectangles share more than an edge."""
        return (
            self.x < other.right
            and other.x < self.right
            and self.y < other.bottom
            and other.y < self.bottom
        )


@dataclass
class _Item:
    """A drawn node: the request, the response, or a node of the graph."""

    key: str
    shape: str  # request, response, node, model, lookup
    lines: list[str]
    column: int
    stage: int | None  # index into plan.stages
    rect: _Rect = field(default_factory=_Rect)


@dataclass
class _Edge:
    """All columns flowing from one item to another."""

    source: str
    target: str
    columns: list[str]
    label: _Rect = field(default_factory=_Rect)
    detour: bool = False  # skips a column: drawn around below everything
    start: float = 0.0  # y of the port on the source
    end: float = 0.0  # y of the port on the target
    path: str = ""


@dataclass
class _Layout:
    width: float
    height: float
    title: str
    items: dict[str, _Item]
    boxes: list[tuple[Stage, _Rect]]
    edges: list[_Edge]


def _item_size(item: _Item) -> tuple[float, float]:
    first = _text_width(item.lines[0], _NAME)
    rest = [_text_width(line, _DETAIL) for line in item.lines[1:]]
    width = max([first, *rest]) + (32 if item.shape == "model" else 24)
    height = _NAME * _LINE + _DETAIL * _LINE * len(rest) + 14
    if item.shape == "lookup":
        height += 2 * _CAP
    return max(width, 64.0), max(height, 34.0)


def _label_size(columns: list[str]) -> tuple[float, float]:
    width = max(_text_width(c, _LABEL) for c in columns) + 10
    return width, _LABEL * _LINE * len(columns) + 6


def _items(plan: Plan) -> tuple[dict[str, _Item], list[int], list[int | None]]:
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
    start, column, group_of = {}, 1, [None]
    for k in sorted(depth):
        start[k], column = column, column + depth[k]
        group_of += [k] * depth[k]
    group_of.append(None)
    items = {
        "request": _Item(
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
            items[n.name] = _Item(n.name, shape, lines, start[layer[i]] + inner[n.name], i)
    items["response"] = _Item(
        "response", "response", ["response", *_wrap(list(g.response_fields), _WRAP)], column, None
    )
    for item in items.values():
        item.rect.w, item.rect.h = _item_size(item)
    return items, layer, group_of


def _edges(plan: Plan, items: dict[str, _Item]) -> list[_Edge]:
    g = plan.graph
    flows = [(c, n.name) for n in g.order for c in n.inputs]
    flows += [(c, "response") for c in g.response_fields]
    edges: dict[tuple[str, str], _Edge] = {}
    for column, target in flows:
        producer = g.producer(column)
        source = producer.name if producer else "request"
        edge = edges.setdefault((source, target), _Edge(source, target, []))
        if column not in edge.columns:
            edge.columns.append(column)
    for edge in edges.values():
        edge.label.w, edge.label.h = _label_size(edge.columns)
        edge.detour = items[edge.target].column > items[edge.source].column + 1
    return list(edges.values())


def _stack(rects: list[_Rect], gap: float) -> float:
    return sum(r.h for r in rects) + gap * max(len(rects) - 1, 0)


def _pack(labels: list[tuple[float, _Rect]], top: float, bottom: float) -> None:
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


def _layout(plan: Plan) -> _Layout:
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
        header = max(_text_width(_stage_label(plan.stages[i]), _HEADER) for i in stages) + 16
        pad[k] = _PAD + max(header - inside - 2 * _PAD, 0.0) / 2
    col_x, gap_x = {}, {}
    x = _MARGIN
    for c in range(last + 1):
        k = group_of[c]
        if k is not None and group_of[c - 1] != k:
            x += pad[k]
        col_x[c] = x
        x += col_w[c]
        if k is not None and group_of[c + 1] != k:
            x += pad[k]
        if c < last:
            gap_x[c] = x
            x += gap_w[c]
    width = x + _MARGIN

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
    box_h = [h + 2 * (_HEAD + _PAD) for h in content_h]
    layer_h = {k: sum(box_h[i] for i in s) + _VGAP * (len(s) - 1) for k, s in layers.items()}
    heights = [items["request"].rect.h, items["response"].rect.h, *layer_h.values()]
    heights += [_stack([e.label for e in leaving[c]], _LGAP) for c in range(last) if not inner(c)]
    top = _MARGIN + _TITLE * _LINE + 8
    height = max(heights)
    middle = top + height / 2

    # Positions.
    for key in ("request", "response"):
        it = items[key]
        it.rect.x = col_x[it.column] + (col_w[it.column] - it.rect.w) / 2
        it.rect.y = middle - it.rect.h / 2
    boxes: list[_Rect] = [_Rect() for _ in plan.stages]
    for k, stages in layers.items():
        cols = cols_of[k]
        y = middle - layer_h[k] / 2
        for i in stages:
            box = boxes[i]
            box.x, box.y, box.h = col_x[cols[0]] - pad[k], y, box_h[i]
            box.w = col_x[cols[-1]] + col_w[cols[-1]] + pad[k] - box.x
            content = box.y + _HEAD + _PAD
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
            for i in layers[group_of[c]]:
                content = boxes[i].y + _HEAD + _PAD
                own = [e for e in leaving[c] if items[e.source].stage == i]
                _pack([(_wanted(e), e.label) for e in own], content, content + content_h[i])
        else:
            _pack([(_wanted(e), e.label) for e in leaving[c]], top, top + height)

    # Paths; detours run in lanes below everything, shorter spans nearer the picture.
    for e in edges:
        if not e.detour:
            e.path = _short_path(e, items)
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
        e.path = _detour_path(e, items, down_x, up_x, bottom + 2 * _LANE * (n + 1))
    if detours:
        bottom += 2 * _LANE * (len(detours) + 1)
    g = plan.graph
    stages = len(plan.stages)
    title = (
        f"{g.name} {g.version} · {stages} stage{'' if stages == 1 else 's'}"
        f" · {'fused' if plan.fused else 'unfused'}"
    )
    return _Layout(
        width, bottom + _MARGIN - 8, title, items, list(zip(plan.stages, boxes, strict=True)), edges
    )


def _wanted(edge: _Edge) -> float:
    """Where a label would like its centre: halfway between the ports, or level with the source."""
    return edge.start if edge.detour else (edge.start + edge.end) / 2


def _ports(items: dict[str, _Item], edges: list[_Edge]) -> None:
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
    return f"C {_num(mid)},{_num(y1)} {_num(mid)},{_num(y2)} {_num(x2)},{_num(y2)}"


def _short_path(e: _Edge, items: dict[str, _Item]) -> str:
    sx, tx = items[e.source].rect.right, items[e.target].rect.x
    ly = e.label.y + e.label.h / 2
    return (
        f"M {_num(sx)},{_num(e.start)} {_curve(sx, e.start, e.label.x, ly)} "
        f"L {_num(e.label.right)},{_num(ly)} {_curve(e.label.right, ly, tx, e.end)}"
    )


def _detour_path(e: _Edge, items: dict[str, _Item], down: float, up: float, lane: float) -> str:
    """Source -> label -> down to its lane below everything -> along -> up -> into the target."""
    sx, tx = items[e.source].rect.right, items[e.target].rect.x
    ly, r = e.label.y + e.label.h / 2, _RADIUS
    return " ".join(
        [
            f"M {_num(sx)},{_num(e.start)} {_curve(sx, e.start, e.label.x, ly)}",
            f"L {_num(down - r)},{_num(ly)} Q {_num(down)},{_num(ly)} {_num(down)},{_num(ly + r)}",
            f"L {_num(down)},{_num(lane - r)} Q {_num(down)},{_num(lane)} {_num(down + r)},{_num(lane)}",
            f"L {_num(up - r)},{_num(lane)} Q {_num(up)},{_num(lane)} {_num(up)},{_num(lane - r)}",
            f"L {_num(up)},{_num(e.end + r)} Q {_num(up)},{_num(e.end)} {_num(up + r)},{_num(e.end)}",
            f"L {_num(tx)},{_num(e.end)}",
        ]
    )


# -- rendering ---------------------------------------------------------------------------------


def _text(x: float, y: float, text: str, size: float, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" font-size="{_num(size)}"{extra}>{escape(text)}</text>'
    )


def _shape(item: _Item) -> list[str]:
    r = item.rect
    fill, stroke = _NODE_COLOURS[item.shape]
    paint = f'fill="{fill}" stroke="{stroke}" stroke-width="1.3"'
    x, y, w, h = _num(r.x), _num(r.y), _num(r.w), _num(r.h)
    if item.shape in ("request", "response"):  # a stadium
        return [
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{_num(min(r.h / 2, 16))}" {paint}/>'
        ]
    if item.shape == "lookup":  # a cylinder: it reads a feature store
        rx, top, low = r.w / 2, r.y + _CAP, r.bottom - _CAP
        body = (
            f"M {x},{_num(top)} L {x},{_num(low)} A {_num(rx)},{_num(_CAP)} 0 0 0 {_num(r.right)},{_num(low)} "
            f"L {_num(r.right)},{_num(top)} A {_num(rx)},{_num(_CAP)} 0 0 0 {x},{_num(top)} Z"
        )
        rim = f"M {x},{_num(top)} A {_num(rx)},{_num(_CAP)} 0 0 0 {_num(r.right)},{_num(top)}"
        return [
            f'<path d="{body}" {paint}/>',
            f'<path d="{rim}" fill="none" stroke="{stroke}" stroke-width="1.3"/>',
        ]
    parts = [
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{"2" if item.shape == "model" else "6"}" {paint}/>'
    ]
    if item.shape == "model":  # a "subroutine" box: it runs a registered model
        for bar in (r.x + 6, r.right - 6):
            parts.append(
                f'<line x1="{_num(bar)}" y1="{y}" x2="{_num(bar)}" y2="{_num(r.bottom)}" stroke="{stroke}" stroke-width="1"/>'
            )
    return parts


def _item_svg(item: _Item) -> list[str]:
    r = item.rect
    parts = [f'<g class="node {item.shape}" data-name="{escape(item.key)}">', *_shape(item)]
    lines = [(item.lines[0], _NAME, "bold")] + [
        (line, _DETAIL, "normal") for line in item.lines[1:]
    ]
    total = sum(size * _LINE for _, size, _ in lines)
    y = r.y + (r.h - total) / 2 + (_CAP / 2 if item.shape == "lookup" else 0)
    for text, size, weight in lines:
        y += size * _LINE
        parts.append(
            _text(
                r.x + r.w / 2,
                y - size * 0.35,
                text,
                size,
                text_anchor="middle",
                font_weight=weight,
                fill="#222222",
            )
        )
    parts.append("</g>")
    return parts


def svg(plan: Plan) -> str:
    """Render ``plan`` as a self-contained SVG picture, deterministic to the byte.

    The same drawing as `mermaid`, laid out here: request, stages (boxes labelled with name,
    kind, resources and batching) around their nodes, response, left to right, edges labelled
    with the columns they carry. Model nodes are drawn as boxes with side bars and their
    ``models:/`` URI, feature lookups as cylinders with their table.

    Args:
        plan: The plan to draw.

    Returns:
        The SVG document as text (UTF-8, no external references).
    """
    lay = _layout(plan)
    marker = f"graphops-arrow-{plan.graph.name}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(lay.width)}" height="{_num(lay.height)}" '
        f'viewBox="0 0 {_num(lay.width)} {_num(lay.height)}" role="img" '
        f'aria-label="{escape(lay.title)}" font-family="{escape(_FONT)}">',
        f"<title>{escape(lay.title)}</title>",
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0,0 L 10,5 L 0,10 z" '
        'fill="#555555"/></marker></defs>',
        f'<rect width="{_num(lay.width)}" height="{_num(lay.height)}" fill="#ffffff"/>',
        _text(_MARGIN, _MARGIN + _TITLE, lay.title, _TITLE, font_weight="bold", fill="#222222"),
    ]
    for stage, box in lay.boxes:
        fill, stroke = _STAGE_COLOURS[stage.kind]
        out += [
            f'<g class="stage {stage.kind.value}" data-name="{escape(stage.name)}">',
            f'<rect x="{_num(box.x)}" y="{_num(box.y)}" width="{_num(box.w)}" height="{_num(box.h)}" '
            f'rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.2" stroke-dasharray="5 3"/>',
            _text(
                box.x + 8,
                box.y + _HEAD - 5,
                _stage_label(stage),
                _HEADER,
                fill=stroke,
                font_weight="bold",
            ),
            "</g>",
        ]
    for e in lay.edges:
        out.append(
            f'<path class="edge" data-from="{escape(e.source)}" data-to="{escape(e.target)}" '
            f'd="{e.path}" fill="none" stroke="#555555" stroke-width="1.2" marker-end="url(#{marker})"/>'
        )
    for item in lay.items.values():
        out += _item_svg(item)
    for e in lay.edges:
        r = e.label
        out += [
            f'<g class="label" data-from="{escape(e.source)}" data-to="{escape(e.target)}">',
            f'<rect x="{_num(r.x)}" y="{_num(r.y)}" width="{_num(r.w)}" height="{_num(r.h)}" rx="3" '
            'fill="#ffffff" stroke="#c8c8c8"/>',
        ]
        for n, column in enumerate(e.columns):
            y = r.y + 3 + _LABEL * _LINE * (n + 1) - _LABEL * 0.35
            out.append(_text(r.x + 5, y, column, _LABEL, fill="#333333"))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"

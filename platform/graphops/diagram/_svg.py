"""SVG picture of a plan: the same drawing as the Mermaid diagram; `layout` places everything."""

from __future__ import annotations

from html import escape

from graphops.diagram._layout import (
    CAP,
    DETAIL,
    HEAD,
    HEADER,
    LABEL,
    LINE,
    MARGIN,
    NAME,
    TITLE,
    Item,
    layout,
    num,
)
from graphops.diagram._mermaid import _stage_label
from graphops.planner import Boundary, Plan

# Text widths in `_layout` assume a monospace font.
_FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
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


def _text(x: float, y: float, text: str, size: float, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return f'<text x="{num(x)}" y="{num(y)}" font-size="{num(size)}"{extra}>{escape(text)}</text>'


def _shape(item: Item) -> list[str]:
    r = item.rect
    fill, stroke = _NODE_COLOURS[item.shape]
    paint = f'fill="{fill}" stroke="{stroke}" stroke-width="1.3"'
    x, y, w, h = num(r.x), num(r.y), num(r.w), num(r.h)
    if item.shape in ("request", "response"):  # a stadium
        return [
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{num(min(r.h / 2, 16))}" {paint}/>'
        ]
    if item.shape == "lookup":  # a cylinder: it reads a feature store
        rx, top, low = r.w / 2, r.y + CAP, r.bottom - CAP
        body = (
            f"M {x},{num(top)} L {x},{num(low)} A {num(rx)},{num(CAP)} 0 0 0 {num(r.right)},{num(low)} "
            f"L {num(r.right)},{num(top)} A {num(rx)},{num(CAP)} 0 0 0 {x},{num(top)} Z"
        )
        rim = f"M {x},{num(top)} A {num(rx)},{num(CAP)} 0 0 0 {num(r.right)},{num(top)}"
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
                f'<line x1="{num(bar)}" y1="{y}" x2="{num(bar)}" y2="{num(r.bottom)}" stroke="{stroke}" stroke-width="1"/>'
            )
    return parts


def _item_svg(item: Item) -> list[str]:
    r = item.rect
    parts = [f'<g class="node {item.shape}" data-name="{escape(item.key)}">', *_shape(item)]
    lines = [(item.lines[0], NAME, "bold")] + [(line, DETAIL, "normal") for line in item.lines[1:]]
    total = sum(size * LINE for _, size, _ in lines)
    y = r.y + (r.h - total) / 2 + (CAP / 2 if item.shape == "lookup" else 0)
    for text, size, weight in lines:
        y += size * LINE
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
    lay = layout(plan)
    marker = f"graphops-arrow-{plan.graph.name}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(lay.width)}" height="{num(lay.height)}" '
        f'viewBox="0 0 {num(lay.width)} {num(lay.height)}" role="img" '
        f'aria-label="{escape(lay.title)}" font-family="{escape(_FONT)}">',
        f"<title>{escape(lay.title)}</title>",
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0,0 L 10,5 L 0,10 z" '
        'fill="#555555"/></marker></defs>',
        f'<rect width="{num(lay.width)}" height="{num(lay.height)}" fill="#ffffff"/>',
        _text(MARGIN, MARGIN + TITLE, lay.title, TITLE, font_weight="bold", fill="#222222"),
    ]
    for stage, box in lay.boxes:
        fill, stroke = _STAGE_COLOURS[stage.kind]
        out += [
            f'<g class="stage {stage.kind.value}" data-name="{escape(stage.name)}">',
            f'<rect x="{num(box.x)}" y="{num(box.y)}" width="{num(box.w)}" height="{num(box.h)}" '
            f'rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.2" stroke-dasharray="5 3"/>',
            _text(
                box.x + 8,
                box.y + HEAD - 5,
                _stage_label(stage),
                HEADER,
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
            f'<rect x="{num(r.x)}" y="{num(r.y)}" width="{num(r.w)}" height="{num(r.h)}" rx="3" '
            'fill="#ffffff" stroke="#c8c8c8"/>',
        ]
        for n, column in enumerate(e.columns):
            y = r.y + 3 + LABEL * LINE * (n + 1) - LABEL * 0.35
            out.append(_text(r.x + 5, y, column, LABEL, fill="#333333"))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"

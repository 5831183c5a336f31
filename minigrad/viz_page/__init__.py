"""The graph page's files (page.html, page.css, page.js) and the two ways of filling them in.

    render_page(model)  -> one self-contained HTML document (the model as JSON inside it)
    render_svg(model)   -> a static SVG picture of the same layout (for `_repr_svg_`)

Escaping, in one place: the model goes into a `<script type="application/json">` with
`<`, `>` and `&` written as JSON escapes, so no name can close the script element; the
title goes through `html.escape`; the page's script sets every other text with
`textContent`. In the SVG every text goes through `html.escape`.
"""

import html
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
_SLOT = re.compile(r"\$(title|css|script|data)\b")


def _read(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def model_json(model: dict) -> str:
    """JSON text that is safe inside a <script> element: no <, > or & left as themselves."""
    text = json.dumps(model, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render_page(model: dict) -> str:
    """The whole page: the template's slots filled in one pass (a slot's text is not searched again)."""
    values = {"title": html.escape(model["title"]), "css": _read("page.css"), "script": _read("page.js"),
              "data": model_json(model)}
    return _SLOT.sub(lambda match: values[match.group(1)], _read("page.html"))


_FILLS = {"op": ("#ffffff", "#475569"), "fused": ("#ffedd5", "#ea580c"), "param": ("#dbeafe", "#3b82f6"),
          "const": ("#f1f5f9", "#94a3b8"), "output": ("#dcfce7", "#16a34a")}


def render_svg(model: dict) -> str:
    """A picture of the laid-out graph: boxes, labels and edges, no interaction."""
    width, height = model["width"], model["height"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.1f} {height:.1f}" font-family="monospace" font-size="11">',
             '<rect width="100%" height="100%" fill="#ffffff"/>']
    for edge in model["edges"]:
        points = edge["route"]
        if len(points) == 2:
            (x0, y0), (x1, y1) = points
            middle = (y0 + y1) / 2
            path = f"M{x0},{y0} C{x0},{middle} {x1},{middle} {x1},{y1}"
        else:
            path = f"M{points[0][0]},{points[0][1]}" + "".join(
                " C" + " ".join(f"{x},{y}" for x, y in points[i:i + 3]) for i in range(1, len(points) - 2, 3))
        parts.append(f'<path d="{path}" fill="none" stroke="#94a3b8"/>')
    for node in model["nodes"]:
        fill, stroke = _FILLS[node["kind"]]
        x, y, w, h = node["x"] - node["w"] / 2, node["y"] - node["h"] / 2, node["w"], node["h"]
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="{stroke}"/>')
        parts.append(f'<text x="{node["x"]:.1f}" y="{y + 15:.1f}" text-anchor="middle">{html.escape(node["label"])}</text>')
        parts.append(f'<text x="{node["x"]:.1f}" y="{y + 28:.1f}" text-anchor="middle" fill="#64748b" '
                     f'font-size="10">{html.escape(node["sub"])}</text>')
    parts.append("</svg>")
    return "\n".join(parts)

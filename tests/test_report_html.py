"""The report as HTML: the notebook view (``_repr_html_``) and its heatmaps.

Each failing tensor with an error map gets three inline SVG heatmaps (expected, got,
error) that reference nothing outside the page; their cells show the same pattern as the
terminal map, the axes carry the dim names, the worst element is outlined, and each
colour scale has its numbers.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from gradcheck_cli import Report
from gradcheck_cli.report.svg import WITHIN

from . import mistake_maps

SVG = re.compile(r"<svg\b.*?</svg>", re.S)


def failing_report() -> Report:
    relu = mistake_maps.relu_mask(batch=4, features=3).check()
    conv = mistake_maps.strided_conv_edge(n=2, c_in=3, size=8).check()
    shape = mistake_maps.passing("b", "param", [4], ["out"])
    shape.status, shape.actual_shape = "shape_error", [5, 4]  # no map: shapes differ
    ok = mistake_maps.passing("w", "param", [3, 4], ["in", "out"])
    ok.error_map = mistake_maps.relu_mask(batch=3, features=4).error_map()  # a passing tensor never draws one
    return Report(
        results=[
            mistake_maps.result_of("relu", relu),
            mistake_maps.result_of("conv", conv),
            mistake_maps.result_of("lin", ok, shape),
        ]
    )


def external_references(page: str) -> list[str]:
    """Anything a browser would fetch, run or follow off the page."""
    found = re.findall(r"""(?:src|href|xlink:href|action)\s*=\s*["']?(?!#)[^"'\s>]+""", page, re.I)
    found += re.findall(r"url\(\s*['\"]?(?!#)[^)]*\)", page)
    found += re.findall(r"<(?:script|link|iframe|object|embed|img)\b|@import|https?://", page, re.I)
    return found


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in SVG.findall(html)]


def cells(svg: ET.Element) -> list[ET.Element]:
    """The heatmap's cells (the rects with a value's title), in row-major order."""
    return [r for r in svg.iter("rect") if r.find("title") is not None and " got " in r.find("title").text]


def test_the_notebook_view_has_three_heatmaps_per_failing_tensor_and_nothing_external():
    html = failing_report()._repr_html_()
    assert html.count("<svg") == 2 * 3  # relu's x and conv's x; not the shape error, not the passing w
    assert external_references(html) == []
    titles = [svg.find("text").text for svg in svgs(html)]
    assert titles == ["expected", "got", "error / tolerance"] * 2
    assert "x [batch=4, features=3]" in html and "x [n=2, c_in=3, h=8, w=8]" in html


def test_the_table_has_colours():
    html = failing_report()._repr_html_()
    assert re.search(r'<td style="[^"]*color:#cf222e[^"]*">mismatch</td>', html)
    assert re.search(r'<td style="[^"]*color:#1a7f37[^"]*">PASS</td>', html)
    assert "x: [partial] the wrong ones are exactly where x &lt;= 0" in html


def test_the_error_heatmap_shows_the_mask_the_axes_the_worst_element_and_its_scale():
    mistake = mistake_maps.relu_mask(batch=4, features=3)
    check = mistake.check()
    html = Report(results=[mistake_maps.result_of("relu", check)])._repr_html_()
    expected, got, error = svgs(html)
    fills = [r.get("fill") for r in cells(error)]
    wrong = (mistake.inputs["x"] <= 0).reshape(-1).tolist()
    assert [f != WITHIN for f in fills] == wrong  # the mask, cell by cell

    labels = [t.text for t in error.iter("text")]
    assert "← batch 0–3" in labels and "features 0–2 →" in labels
    assert "≤1" in labels and labels[-1] == f"{check.error_map.max_ratio:.3g}"  # the scale's numbers
    emap = check.error_map
    vmax = max(abs(v) for grid in (emap.expected, emap.actual) for row in grid[0] for v in row)
    assert [t.text for t in got.iter("text")][-3:] == [f"{-vmax:.3g}", "0", f"{vmax:.3g}"]

    r, c = check.worst_index
    for svg in (expected, got, error):
        cell = cells(svg)[r * 3 + c]
        outline = [x for x in svg.iter("rect") if getattr(x.find("title"), "text", "") == "the worst element"]
        assert len(outline) == 2  # a dark and a light ring
        assert float(outline[0].get("x")) == float(cell.get("x")) + 0.75
        assert float(outline[0].get("y")) == float(cell.get("y")) + 0.75


def test_hovering_a_cell_gives_its_numbers_and_a_pooled_cell_says_what_it_covers():
    expected = mistake_maps.strided_conv_edge(n=2, c_in=3, size=8).check()
    html = Report(results=[mistake_maps.result_of("conv", expected)])._repr_html_()
    first = cells(svgs(html)[2])[0].find("title").text
    assert first.startswith("n=0, c_in=0, h 0, w 0: expected ") and first.endswith("x tolerance")

    big = mistake_maps.Mistake("g", "input", *_one_wrong(200, 300), ["rows_", "cols_"]).check()
    pooled = cells(svgs(Report(results=[mistake_maps.result_of("big", big)])._repr_html_())[2])
    assert len(pooled) == 8 * 20  # 200 x 300 in blocks of 26 x 15
    assert pooled[0].find("title").text.startswith("rows_ 0–25, cols_ 0–14: expected 0, got 0, error 0x")
    assert (
        pooled[-1]
        .find("title")
        .text.startswith("rows_ 182–199, cols_ 285–299: expected 0, got 1, error 1e+07x")
    )


def _one_wrong(rows: int, cols: int):
    import torch

    expected = torch.zeros(rows, cols, dtype=torch.float64)
    actual = expected.clone()
    actual[-1, -1] = 1.0
    return expected, actual


def test_the_ids_of_two_reports_on_one_notebook_page_do_not_clash():
    first, second = failing_report()._repr_html_(), failing_report()._repr_html_()
    ids = lambda html: set(re.findall(r'id="([^"]+)"', html))  # noqa: E731
    assert ids(first) and not ids(first) & ids(second)

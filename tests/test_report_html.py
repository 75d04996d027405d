"""The report as HTML: the notebook view (``_repr_html_``), its heatmaps, and the page.

Each failing tensor with an error map gets three inline SVG heatmaps (expected, got,
error) that reference nothing outside the page; their cells show the same pattern as the
terminal map, the axes carry the dim names, the worst element is outlined, and each
colour scale has its numbers. The page (``--format html``) is checked in a real headless
chromium: it loads with no console error or failed load, and its screenshot is not blank.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import struct
import subprocess
import time
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from gradcheck_cli import Report
from gradcheck_cli.report import FORMATS, render
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


# -- the HTML report: one page --------------------------------------------------------


def test_the_page_is_self_contained_with_the_summary_first_and_failing_results_first():
    page = render(suite_report(), "html")
    assert page.startswith("<!DOCTYPE html>\n") and page.rstrip().endswith("</html>")
    assert external_references(page) == []
    assert "<title>gradcheck: FAIL</title>" in page and "<style>" in page
    summary = page[: page.index("<section")]
    assert "FAIL: 1 passed, 2 failed, 1 error" in summary and "gradcheck 0.1.0 · torch 2.13.0" in summary
    assert re.findall(r'<li><a href="#(result-\d)">(\w+)</a> (\w+)', summary) == [
        ("result-1", "FAILED", "relu"),
        ("result-2", "FAILED", "conv"),
        ("result-3", "ERROR", "broken"),
    ]
    sections = re.findall(r'<section id="(result-\d)"', page)
    assert sections == ["result-1", "result-2", "result-3", "result-0"]  # the passing one last
    assert page.count("<svg") == 6
    assert "x: [partial] the wrong ones are exactly where x &lt;= 0" in page  # diagnosis and hint
    assert "note: x is [batch=4, features=3]: a transposed gradient" in page
    assert "ImportError: no module named &#x27;layers&#x27;" in page


def suite_report() -> Report:
    ok = mistake_maps.result_of("scale", mistake_maps.passing("x", "input", [8, 4], ["batch", "features"]))
    relu = mistake_maps.result_of("relu", mistake_maps.relu_mask(batch=4, features=3).check())
    relu.notes = ["x is [batch=4, features=3]: a transposed gradient has the right shape here"]
    conv = mistake_maps.result_of("conv", mistake_maps.strided_conv_edge().check())
    broken = mistake_maps.result_of("broken", error="ImportError: no module named 'layers'")
    return Report(results=[ok, relu, conv, broken], version="0.1.0", torch="2.13.0")


def test_html_is_one_of_the_formats():
    assert "html" in FORMATS
    with pytest.raises(ValueError, match="unknown format"):
        render(suite_report(), "pdf")


@pytest.mark.parametrize("flags", [("--atol", "0", "--rtol", "0"), ()], ids=["zero tolerance", "default"])
def test_an_element_off_by_infinitely_many_allowances_still_writes_the_page(gradcheck, tmp_path, flags):
    # atol = rtol = 0: every wrong element is off by inf allowances; the colour scale copes.
    page = tmp_path / "report.html"
    ran = gradcheck("run", "examples/mistakes/relu_mask.yaml", *flags, "-f", "html", "-o", str(page))
    assert ran.exit_code == 1, ran.stderr
    assert "Traceback" not in ran.stderr and "<svg" in page.read_text()


# -- in a real browser ------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium to open the page in (.ci/run installs Debian's chromium with apt-get)")


class Browser:
    """Headless chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
    it loads a page, collects what the page logs as an error, and takes a screenshot."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--remote-debugging-pipe",
    )

    def __init__(self, profile: Path) -> None:
        to_chrome, self._send = os.pipe()
        self._receive, from_chrome = os.pipe()

        def pipes() -> None:  # the protocol's fds in the child: 3 (it reads) and 4 (it writes)
            reads, writes = os.dup(to_chrome), os.dup(from_chrome)  # copies: 3 and 4 may be either end
            os.dup2(reads, 3)
            os.dup2(writes, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [_chromium(), *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=pipes,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=self.session)

    def _read(self, timeout: float = 30) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._receive], [], [], timeout)
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._receive, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._send, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read(max(0.1, deadline - time.monotonic())))

    def open(self, path: Path, width: int = 1200, height: int = 900) -> None:
        self.events.clear()
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=self.session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.navigate", session=self.session, url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")
        self.call("Runtime.evaluate", session=self.session, expression="1")  # let queued events arrive

    def errors(self) -> list[str]:
        """What the page reported: console errors and warnings, exceptions, failed loads."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                found.append(params["entry"]["text"])
        return found

    def screenshot(self, full_page: bool = False) -> bytes:
        options: dict = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
            options["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            options["captureBeyondViewport"] = True
        return base64.b64decode(self.call("Page.captureScreenshot", session=self.session, **options)["data"])

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (EOFError, OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._send)
        os.close(self._receive)


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit truecolour PNG, decoded by hand."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(chunks), width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r[i : i + 3]) for r in rows for i in range(0, stride, bpp)]  # type: ignore[misc]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _chromium()
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def test_the_browser_check_sees_what_a_broken_page_logs(browser, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><body style="background:#123456"><script>console.error("deliberate")</script>'
        '<img src="gone.png"></body>'
    )
    browser.open(broken, width=320, height=200)
    errors = browser.errors()
    assert "deliberate" in errors
    assert any("ERR_FILE_NOT_FOUND" in e for e in errors), errors  # the missing image
    width, height, pixels = png_pixels(browser.screenshot())  # and the decoder reads what was drawn
    assert (width, height) == (320, 200)
    assert pixels.count(b"\x12\x34\x56") > 0.95 * len(pixels)


def test_the_page_loads_in_a_real_browser_without_errors_and_is_not_blank(browser, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(suite_report(), "html"), encoding="utf-8")
    browser.open(page)
    assert browser.errors() == []
    shown = browser.call(
        "Runtime.evaluate", session=browser.session, expression="document.querySelectorAll('svg rect').length"
    )
    assert shown["result"]["value"] > 200  # the heatmaps were drawn
    width, height, pixels = png_pixels(browser.screenshot())
    assert (width, height) == (1200, 900)
    colours = set(pixels)
    not_white = sum(p != b"\xff\xff\xff" for p in pixels)
    assert len(colours) > 50 and not_white > 0.03 * len(pixels), (len(colours), not_white)
    reds = sum(p[0] > 150 and p[1] < 80 and p[2] < 80 for p in pixels)
    assert reds > 500  # the far-over cells and the FAIL headline

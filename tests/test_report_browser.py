"""report.html opened in a real browser (Debian's headless Chromium, driven by playwright): the page of a real run
loads offline with no error, every figure decodes, every section and every link is there, nothing is fetched, it
renders to a non-blank screenshot, and an unfinished run's page says it is partial.

Runs on the weightless FakeModel (2 layers of 64 neurons, two features, two selectors, both controls: a few seconds
per run); the runs are built once for the module. Skipped only where no ``chromium`` is on PATH (CI installs it with
``.ci/browser-packages``); playwright drives that system browser and never downloads one.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
from PIL import Image
from typer.testing import CliRunner

from probekit.cli import app, write_reports
from probekit.registry import PluginRegistry
from probekit.results import RunDirectory
from probekit.spec import validate_spec_text
from probekit.sweep import run_sweep

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH to open report.html in (CI installs "
                                                          "Debian's with .ci/browser-packages)")

SPEC = """
name: browser-{name}
models: {models}
datasets:
  - plugin: text_features
    params: {{max_sequences: 60, sequence_length: 64, max_examples: 300, min_positive_rate: 0.02,
             features: [all_digits, leading_capital]}}
layers: [0, 1]
selectors: [{{plugin: mean_diff}}, {{plugin: f_stat}}]
ks: [1, 2, 3]
controls: [shuffled_labels, random_neurons]
output: {output}
cache: {cache}
"""
MODELS = {"one": "[{plugin: fake}]", "two": "[{plugin: fake, label: a}, {plugin: fake, label: b, params: {seed: 3}}]"}
SECTIONS = ["Best probe per feature", "Where each feature lives", "Selectors compared", "Models compared",
            "Precision and recall of the sparsest probes", "F1 against k per feature",
            "Activations of each feature's best neuron"]
PARTIAL = "Partial report: the run has not finished"

_built: dict[str, Path] = {}


@pytest.fixture
def runs(fake_model_plugin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run directories with their report.html, built by the first test that asks (the fake model plugin is
    registered only while a test runs): "one" (one model), "two" (two models) and "partial" (a copy of "one" whose
    run.json says it is still running, its page rewritten by `probekit report --html`)."""
    if not _built:
        root = tmp_path_factory.mktemp("report-browser")
        for name, models in MODELS.items():
            spec = SPEC.format(name=name, models=models, output=root / name, cache=root / "cache")
            summary = run_sweep(validate_spec_text(spec, "browser.yaml", PluginRegistry()))
            directory = RunDirectory(Path(summary.run_dir))
            manifest = directory.read_manifest()
            assert manifest is not None and manifest.status == "complete"
            write_reports(directory, manifest, directory.read_results(), html=True)
            _built[name] = directory.path
        partial = root / "partial"
        shutil.copytree(root / "one", partial)
        document = json.loads((partial / "run.json").read_text())
        (partial / "run.json").write_text(json.dumps({**document, "status": "running"}))
        result = CliRunner().invoke(app, ["report", str(partial), "--html"])
        assert result.exit_code == 0, result.output
        _built["partial"] = partial
    return _built


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield launched
        launched.close()


class Page:
    """A fresh browser page that records console errors, page errors and failed requests, and (with ``offline``)
    every request it makes, aborting any that is not the page itself or a data: URI."""

    def __init__(self, browser, url: str, offline: bool = False) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.url = url
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda message: self.errors.append(f"console: {message.text}")
                     if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("requestfailed", lambda request: self.errors.append(f"request failed: {request.url}"))
        self.page.on("request", lambda request: self.requests.append(request.url))
        if offline:
            self.page.route("**/*", self._only_the_page)
        self.page.goto(url, wait_until="load")

    def _only_the_page(self, route) -> None:
        if route.request.url == self.url or route.request.url.startswith("data:"):
            route.continue_()
        else:
            route.abort()

    def close(self) -> None:
        self.context.close()


def open_report(browser, directory: Path, offline: bool = False) -> Page:
    return Page(browser, (directory / "report.html").as_uri(), offline)


@pytest.mark.parametrize("run", ["one", "two"])
def test_the_page_loads_without_error_with_every_figure_section_and_link(runs: dict[str, Path], browser,
                                                                          run: str) -> None:
    opened = open_report(browser, runs[run])
    page = opened.page
    try:
        assert opened.errors == []
        headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
        assert headings == [s for s in SECTIONS if run == "two" or s != "Models compared"]
        images = page.eval_on_selector_all("img", "images => images.map(i => [i.complete, i.naturalWidth, "
                                                  "i.naturalHeight, i.src.slice(0, 22)])")
        assert images and all(done and width > 0 and height > 0 and src == "data:image/png;base64,"
                              for done, width, height, src in images), images
        # every section but the table of best probes has its figures (the activation histograms too: the cache
        # still holds both layers)
        without = page.eval_on_selector_all("section", "ss => ss.filter(s => !s.querySelector('img')).map(s => s.id)")
        assert without == ["best"]
        assert "Not drawn" not in page.inner_text("body")
        assert PARTIAL not in page.inner_text("body")
        assert "all_digits" in page.inner_text("#best") and "leading_capital" in page.inner_text("#best")
        if run == "two":
            assert "a / text_features" in page.inner_text("#best") and "b / text_features" in page.inner_text("#best")

        links = page.eval_on_selector_all("a[href]", "links => links.map(a => [a.getAttribute('href'), a.href])")
        files = {href for href, _ in links if not href.startswith("#")}
        assert {"results/", "run.json", "report.md"} <= files
        for href, absolute in links:
            target, anchor = urldefrag(absolute)
            assert urlparse(target).scheme == "file", href
            path = Path(unquote(urlparse(target).path))
            assert path.exists(), f"{href} -> {path} does not exist"
            if anchor:
                assert page.locator(f"[id='{anchor}']").count() == 1, href
        assert sorted(p.name for p in (runs[run] / "results").glob("*.parquet"))
        json.loads((runs[run] / "run.json").read_text())
    finally:
        opened.close()


def test_the_page_fetches_nothing(runs: dict[str, Path], browser) -> None:
    source = (runs["two"] / "report.html").read_text(encoding="utf-8")
    assert "<script" not in source.lower()
    assert re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", source, flags=re.IGNORECASE) == []
    assert "url(" not in source.lower() and "@import" not in source.lower()  # nor from the style sheet

    opened = open_report(browser, runs["two"], offline=True)
    try:
        opened.page.wait_for_load_state("networkidle")
        assert opened.errors == []  # an aborted request would be listed as failed
        assert [url for url in opened.requests if url != opened.url and not url.startswith("data:")] == []
        assert opened.page.eval_on_selector_all("img", "images => images.every(i => i.naturalWidth > 0)")
    finally:
        opened.close()


def test_a_full_page_screenshot_is_not_blank(runs: dict[str, Path], browser) -> None:
    opened = open_report(browser, runs["two"])
    try:
        boxes = opened.page.eval_on_selector_all("img", "images => images.map(i => { const r = "
                                                 "i.getBoundingClientRect(); return [r.left + scrollX, r.top + "
                                                 "scrollY, r.right + scrollX, r.bottom + scrollY]; })")
        image = Image.open(io.BytesIO(opened.page.screenshot(full_page=True, type="png"))).convert("RGB")
    finally:
        opened.close()
    width, height = image.size
    assert width == 1280 and 2000 < height < 20000  # every figure laid out, the page not collapsed or runaway
    colours = image.getcolors(maxcolors=width * height)
    assert len(colours) > 256  # antialiased text and figures, not a blank or paletted page
    white = sum(count for count, colour in colours if colour == (255, 255, 255))
    assert 0.02 < 1 - white / (width * height) < 0.9  # drawn on, and not drawn over
    darkest, _ = image.crop((0, 0, width, 120)).convert("L").getextrema()
    assert darkest < 100  # the title is rendered in dark text at the top
    assert len(boxes) >= 10
    for box in boxes:  # each figure is painted where it is laid out: within the page, in colour
        left, top, right, bottom = (round(v) for v in box)
        assert 0 <= left < right <= width and 0 <= top < bottom <= height and right - left > 100, box
        figure = image.crop((left, top, right, bottom))
        assert len(figure.getcolors(maxcolors=(right - left) * (bottom - top))) > 20, box
        assert any(max(colour) - min(colour) > 80 for _, colour in figure.getcolors(maxcolors=1 << 24)), box


def test_an_unfinished_run_says_its_report_is_partial(runs: dict[str, Path], browser) -> None:
    opened = open_report(browser, runs["partial"])
    try:
        assert opened.errors == []
        text = opened.page.inner_text("body")
        assert PARTIAL in text and "Run the same command again to complete it." in text
        assert opened.page.locator(".partial").is_visible()
        assert opened.page.eval_on_selector_all("h2", "hs => hs.length") == len(SECTIONS) - 1  # still every section
    finally:
        opened.close()

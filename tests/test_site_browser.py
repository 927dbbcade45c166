"""The site in headless Chromium with the network off (deqode.book.site_check).

Small hand-made pages show what the checker catches; they need Chromium (skipped without it,
with the command that installs it). `make site-test` sets DEQODE_SITE_HTML to a built site: then
every page of it is checked, a screenshot per chapter lands in DEQODE_SCREENSHOTS, and a copy of
the site with one page's MathJax removed must fail.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest

from deqode.book import browser, mathjax, site_check
from deqode.paths import repo_root

SITE = os.environ.get("DEQODE_SITE_HTML")
SCREENSHOTS = os.environ.get("DEQODE_SCREENSHOTS")


def _chromium_missing() -> str | None:
    try:
        browser.chromium_path()
    except browser.BrowserError as err:
        return str(err)
    return None


MISSING = _chromium_missing()
pytestmark = pytest.mark.skipif(MISSING is not None and not SITE, reason=str(MISSING))


@pytest.fixture(scope="module")
def chromium():
    """One browser for the module's small pages (each start costs seconds)."""
    with browser.Chromium() as started:
        yield started


def png(width: int = 2, height: int = 2) -> bytes:
    """A grey PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\0" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                               0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def page(body: str, head: str = "") -> str:
    """A page shaped like the book's: a sidebar with a link to itself, then ``body``."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body>"
            "<nav class='bd-docs-nav'><a href='page.html'>this page</a></nav>"
            f"<article>{body}</article></body></html>")


def check(chromium, tmp_path: Path, body: str, head: str = "") -> list[str]:
    """The problems of a one-chapter site whose page has ``body``."""
    chapter = tmp_path / "site" / "notebooks"
    chapter.mkdir(parents=True)
    (chapter / "page.html").write_text(page(body, head), encoding="utf-8")
    (chapter / "figure.png").write_bytes(png())
    reports = site_check.check_pages(tmp_path / "site", tmp_path / "shots", browser=chromium)
    assert [r.page for r in reports] == ["notebooks/page.html"]
    return reports[0].problems


TYPESET = "<span class='math'><mjx-container class='MathJax'>x</mjx-container></span>"
#: What MathJax leaves behind once it has typeset the page.
MATHJAX_DONE = "<script>window.MathJax = {startup: {promise: Promise.resolve()}}</script>"


def test_a_good_page_passes(chromium, tmp_path):
    body = (f"<p>A formula {TYPESET} and a figure <img src='figure.png'>.</p>"
            r"<pre>print('\(x\) in code is code')</pre>")
    assert check(chromium, tmp_path, body, MATHJAX_DONE) == []
    shot = tmp_path / "shots" / "notebooks__page.png"
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_raw_tex_fails(chromium, tmp_path):
    body = r"<p>The ODE <span class='math'>\(\dot z = F(t, z)\)</span>.</p>"
    problems = check(chromium, tmp_path, body)
    assert r"untypeset math: \(\dot z = F(t, z)\)" in problems
    assert any(p.startswith("raw TeX in the text") and r"\dot z" in p for p in problems)


@pytest.mark.parametrize("tex", [r"\(x\)", r"\[x\]", "$$x$$", r"\begin{align}", r"$\alpha$"])
def test_raw_tex_outside_math_elements_fails(chromium, tmp_path, tex):
    assert any(p.startswith("raw TeX") for p in check(chromium, tmp_path, f"<p>see {tex} here</p>"))


def test_a_missing_image_a_dead_link_and_a_console_error_fail(chromium, tmp_path):
    body = ("<img src='nowhere.png'><a href='gone.html'>gone</a>"
            "<script>console.error('boom')</script>")
    problems = check(chromium, tmp_path, body)
    assert "image did not load: nowhere.png" in problems
    assert any(p.startswith("link to a missing file") and p.endswith("/gone.html")
               for p in problems)
    assert "console error: console.error: boom" in problems


def test_a_request_to_another_host_is_blocked_and_named(chromium, tmp_path):
    problems = check(chromium, tmp_path, "<img src='https://example.org/logo.png'>")
    assert "request to another host (blocked): https://example.org/logo.png" in problems
    assert "image did not load: https://example.org/logo.png" in problems


def test_a_page_without_sidebar_fails(chromium, tmp_path):
    (tmp_path / "page.html").write_text("<html><body><p>bare</p></body></html>")
    reports = site_check.check_pages(tmp_path, browser=chromium)
    assert reports[0].problems == ["no sidebar (nav.bd-docs-nav)"]


def _vendored_mathjax() -> Path:
    entry = repo_root() / mathjax.DEFAULT_OUT / mathjax.ENTRY
    if not entry.is_file():
        if SITE:
            pytest.fail(f"{entry} is missing: `make` fetches it (python -m deqode.book.mathjax)")
        pytest.skip("the pinned MathJax is not fetched (python -m deqode.book.mathjax)")
    return entry


def test_the_vendored_mathjax_typesets_offline(chromium, tmp_path):
    entry = _vendored_mathjax()
    head = f"<script defer src='{entry.as_uri()}'></script>"
    body = (r"<p><span class='math'>\(\dot z = F(t, z)\)</span></p>"
            r"<div class='math'>\[\int_0^1 f(z(t))\,dt\]</div>")
    (tmp_path / "page.html").write_text(page(body, head), encoding="utf-8")
    [report] = site_check.check_pages(tmp_path, browser=chromium)
    assert report.problems == [] and report.math == report.typeset == 2


# ---- the built site (make site-test) -----------------------------------------------------------
built = pytest.mark.skipif(not SITE, reason="needs a built site (make site-test)")


@built
def test_every_page_of_the_built_site_reads_offline():
    html = Path(SITE)
    shots = Path(SCREENSHOTS) if SCREENSHOTS else None
    if shots is not None and shots.is_dir():
        shutil.rmtree(shots)
    started = time.perf_counter()
    offhost = site_check.offhost_resources(html)
    reports = site_check.check_pages(html, shots)
    report = site_check.summary(reports, offhost)
    print(f"{report}\n{len(reports)} pages in {time.perf_counter() - started:.1f} s")
    assert not offhost and not any(r.problems for r in reports), report
    chapters = sorted(p.stem for p in (html / "notebooks").glob("*.html"))
    assert len(chapters) >= 1
    if shots is not None:
        assert {f"notebooks__{c}.png" for c in chapters} <= {p.name for p in shots.glob("*.png")}


@built
def test_a_built_page_broken_on_purpose_fails(tmp_path):
    """One chapter of a copy of the site without its MathJax: its formulas stay raw TeX."""
    copy = tmp_path / "html"
    shutil.copytree(SITE, copy)
    chapter = max((copy / "notebooks").glob("*.html"), key=lambda p: p.read_text().count("math"))
    text = chapter.read_text(encoding="utf-8")
    script = f'src="../_static/{Path(mathjax.DEFAULT_OUT).name}/{mathjax.ENTRY}'
    assert script in text
    chapter.write_text(text.replace(script, 'src="../_static/no-mathjax.js'), encoding="utf-8")
    [report] = site_check.check_pages(copy, pages=[chapter])
    assert any(p.startswith("raw TeX in the text") for p in report.problems), report.problems
    assert any(p.startswith("untypeset math") for p in report.problems)
    assert "console error: Failed to load resource: net::ERR_FILE_NOT_FOUND" in " ".join(
        report.problems)

"""Check a built site the way a reader gets it: offline, in a real browser.

Two checks, both run by ``make site-test``::

    python -m deqode.book.site_check _build/smoke/_build/html --screenshots _build/screenshots

- :func:`offhost_resources` reads every HTML page and stylesheet and lists each script, stylesheet,
  font, image, frame or preload it would load from another host (the site must carry its own);
- :func:`check_pages` opens every page in headless Chromium with the network cut off and lists, per
  page: math left untypeset (a ``.math`` element without MathJax output, a MathJax error, or raw TeX
  delimiters in the text outside code), images that did not load, console errors, requests that left
  the machine, links (the sidebar's among them) to files that do not exist, and a sidebar without
  links. With ``screenshots``, it saves a full-page PNG of every page of the table of contents.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

# ---- static: nothing loads from another host ---------------------------------------------------
#: ``<link rel=…>`` values that make the browser fetch the ``href``.
LOADING_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "shortcut",
                "apple-touch-icon", "manifest", "preconnect", "dns-prefetch", "prerender"}
#: Attributes that load a resource, per tag (``a href`` only navigates, so it is not here).
LOADING_ATTRS = {"script": ("src",), "img": ("src", "srcset"), "iframe": ("src",),
                 "frame": ("src",), "embed": ("src",), "object": ("data",),
                 "source": ("src", "srcset"), "video": ("src", "poster"), "audio": ("src",),
                 "track": ("src",), "input": ("src",)}
CSS_URL = re.compile(r"""(?:@import\s+(?:url\(\s*)?|url\(\s*)(["']?)([^"')\s]+)\1""",
                     re.IGNORECASE)
CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


@dataclass(frozen=True)
class OffHost:
    """A resource that ``page`` would load from another host."""

    page: str
    what: str
    url: str

    def __str__(self) -> str:
        return f"{self.page}: {self.what} {self.url}"


def is_offhost(url: str) -> bool:
    """True for a URL with a host (``https://…``, ``//cdn…``), false for paths and data URLs."""
    url = url.strip()
    if url.startswith("//"):
        return True
    scheme = urlsplit(url).scheme.lower()
    return scheme not in ("", "data", "blob", "file", "about", "javascript")


class _ResourceParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v or "" for k, v in attrs}
        if tag == "link":
            rels = set(values.get("rel", "").lower().split())
            if rels & LOADING_RELS:
                self.found.append((f"<link rel={'/'.join(sorted(rels))}>", values.get("href", "")))
        for attr in LOADING_ATTRS.get(tag, ()):
            for url in _srcset_urls(values[attr]) if attr == "srcset" and attr in values else (
                    [values[attr]] if attr in values else []):
                self.found.append((f"<{tag} {attr}>", url))
        if "style" in values:
            self.found += [(f"<{tag} style> url", url) for url in css_urls(values["style"])]
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.found += [("<style> url", url) for url in css_urls(data)]


def _srcset_urls(srcset: str) -> list[str]:
    return [part.split()[0] for part in srcset.split(",") if part.strip()]


def css_urls(css: str) -> list[str]:
    """The URLs a stylesheet loads (``url(…)`` and ``@import``), comments left out."""
    return [m.group(2) for m in CSS_URL.finditer(CSS_COMMENT.sub("", css))]


def offhost_in_html(text: str, page: str = "<html>") -> list[OffHost]:
    """The resources of one HTML document that come from another host."""
    parser = _ResourceParser()
    parser.feed(text)
    return [OffHost(page, what, url) for what, url in parser.found if is_offhost(url)]


def offhost_resources(html_dir: str | Path) -> list[OffHost]:
    """Every resource of the site in ``html_dir`` (its ``.html`` pages and ``.css`` files) that
    would be loaded from another host; an empty list for a self-contained site."""
    html_dir = Path(html_dir)
    if not html_dir.is_dir():
        raise FileNotFoundError(f"no built site at {html_dir}; build it with `make book`")
    found: list[OffHost] = []
    for path in sorted(html_dir.rglob("*.html")):
        found += offhost_in_html(path.read_text(encoding="utf-8", errors="replace"),
                                 str(path.relative_to(html_dir)))
    for path in sorted(html_dir.rglob("*.css")):
        page = str(path.relative_to(html_dir))
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [OffHost(page, "css url", url) for url in css_urls(text) if is_offhost(url)]
    return found


# ---- in the browser ----------------------------------------------------------------------------
#: Runs in each page: waits for MathJax and the images, then reports what a reader would see.
PAGE_SCRIPT = r"""
(async () => {
  const wait = (ms) => new Promise((done) => setTimeout(() => done('timeout'), ms));
  let mathjax = 'absent';
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    mathjax = await Promise.race([MathJax.startup.promise.then(() => 'ready'), wait(%(ms)d)]);
  }
  await Promise.race([Promise.all(Array.from(document.images, (img) => {
    img.loading = 'eager';
    return img.decode().catch(() => null);
  })), wait(%(ms)d)]);
  const skip = 'pre, code, script, style, textarea, mjx-container, .highlight';
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const texPattern = /%(tex)s/;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    const text = node.textContent;
    const hit = texPattern.exec(text);
    if (hit && !(parent && parent.closest(skip))) {
      raw.push(text.slice(Math.max(0, hit.index - 30), hit.index + 50).replace(/\s+/g, ' '));
    }
  }
  const math = Array.from(document.querySelectorAll('.math'));
  const sidebar = document.querySelector('nav.bd-docs-nav, .bd-sidebar-primary');
  return {
    mathjax,
    math: math.length,
    typeset: document.querySelectorAll('mjx-container').length,
    untypeset: math.filter((e) => !e.querySelector('mjx-container'))
                   .map((e) => e.textContent.trim().slice(0, 80)),
    tex_errors: Array.from(document.querySelectorAll('mjx-merror'),
                           (e) => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80)),
    raw_tex: raw,
    images: document.images.length,
    broken_images: Array.from(document.images).filter((i) => !(i.complete && i.naturalWidth > 0))
                        .map((i) => i.getAttribute('src')),
    links: Array.from(document.querySelectorAll('a[href]'), (a) => a.href)
                .filter((h) => h.startsWith('file:')),
    sidebar_links: sidebar ? Array.from(sidebar.querySelectorAll('a[href]'), (a) => a.href) : null,
  };
})()
"""
#: Raw TeX in rendered text: \( \) \[ \] $$ \begin{ and $\command.
RAW_TEX = r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\$\\[A-Za-z]"
WAIT_MS = 20000


@dataclass
class PageReport:
    """What one page showed in the browser; ``problems`` is empty for a good page."""

    page: str
    math: int = 0
    typeset: int = 0
    images: int = 0
    seconds: float = 0.0
    screenshot: str | None = None
    problems: list[str] = field(default_factory=list)


def _local_path(url: str) -> Path:
    return Path(url2pathname(unquote(urlsplit(url).path)))


def _problems(found: dict, console_errors: list[str], blocked: list[str]) -> list[str]:
    problems = []
    if found["math"] and found["mathjax"] != "ready":
        problems.append(f"MathJax {found['mathjax']} on a page with {found['math']} formulas")
    problems += [f"untypeset math: {text}" for text in found["untypeset"][:5]]
    problems += [f"TeX error: {text}" for text in found["tex_errors"][:5]]
    problems += [f"raw TeX in the text: …{text}…" for text in found["raw_tex"][:5]]
    problems += [f"image did not load: {src}" for src in found["broken_images"]]
    problems += [f"console error: {text}" for text in dict.fromkeys(console_errors)]
    problems += [f"request to another host (blocked): {url}" for url in dict.fromkeys(blocked)]
    missing = {url.split("#")[0] for url in found["links"]
               if not _local_path(url).exists()}
    problems += [f"link to a missing file: {url}" for url in sorted(missing)]
    if found["sidebar_links"] is None:
        problems.append("no sidebar (nav.bd-docs-nav)")
    elif not found["sidebar_links"]:
        problems.append("the sidebar has no links")
    else:
        outside = [u for u in found["sidebar_links"] if not u.startswith(("file:", "#"))]
        problems += [f"sidebar link leaves the site: {url}" for url in outside]
    return problems


REDIRECT = re.compile(r"""<meta\s+http-equiv=["']?refresh["']?\s+content=["'][^"']*url=([^"'>]+)""",
                      re.IGNORECASE)


def redirect_target(path: Path) -> str | None:
    """The URL a redirect-only page (``<meta http-equiv="refresh">``) sends the reader to."""
    match = REDIRECT.search(path.read_text(encoding="utf-8", errors="replace"))
    return match.group(1).strip() if match else None


def check_page(browser, path: Path, page: str, screenshot: Path | None = None) -> PageReport:
    """Open ``path`` in ``browser`` (a :class:`deqode.book.browser.Chromium`) and report; a
    redirect-only page is checked for its target only."""
    started = time.perf_counter()
    target = redirect_target(path)
    if target is not None:
        missing = not (path.parent / target.split("#")[0]).is_file()
        return PageReport(page, problems=[f"redirects to a missing file: {target}"] * missing,
                          seconds=time.perf_counter() - started)
    log = browser.open(path.resolve().as_uri())
    found = browser.evaluate(PAGE_SCRIPT % {"ms": WAIT_MS, "tex": RAW_TEX},
                             timeout=2 * WAIT_MS / 1000 + 10)
    report = PageReport(page, found["math"], found["typeset"], found["images"],
                        problems=_problems(found, log.console_errors, log.blocked))
    if screenshot is not None:
        report.screenshot = str(browser.screenshot(screenshot))
    report.seconds = time.perf_counter() - started
    return report


def site_pages(html_dir: Path) -> list[Path]:
    """Every HTML page of the site (not those under ``_static`` or ``_sources``)."""
    return sorted(p for p in html_dir.rglob("*.html")
                  if not p.relative_to(html_dir).parts[0].startswith("_"))


def check_pages(html_dir: str | Path, screenshots: str | Path | None = None,
                pages: list[Path] | None = None, browser=None) -> list[PageReport]:
    """Open every page of ``html_dir`` (or only ``pages``) offline in headless Chromium.

    ``screenshots``: a folder for one full-page PNG per page of the book's chapters (the pages
    in folders: ``notebooks/`` and ``book/``), named after the page. ``browser``: an open
    :class:`deqode.book.browser.Chromium` (default: one started for these pages).
    """
    from deqode.book.browser import BrowserError, Chromium

    if browser is None:
        with Chromium() as started:
            return check_pages(html_dir, screenshots, pages, started)
    html_dir = Path(html_dir)
    reports = []
    for path in pages if pages is not None else site_pages(html_dir):
        page = path.relative_to(html_dir).as_posix()
        shot = None
        if screenshots is not None and "/" in page:
            shot = Path(screenshots) / (page.removesuffix(".html").replace("/", "__") + ".png")
        try:
            reports.append(check_page(browser, path, page, shot))
        except BrowserError as err:  # a page that hangs or breaks the tab; the next one may not
            reports.append(PageReport(page, problems=[f"the browser failed on it: {err}"]))
    return reports


def summary(reports: list[PageReport], offhost: list[OffHost]) -> str:
    """One line per page, its problems under it, then the resources from other hosts."""
    lines = []
    for r in reports:
        state = "ok" if not r.problems else f"{len(r.problems)} PROBLEMS"
        lines.append(f"{r.page}: {state} ({r.math} formulas, {r.typeset} typeset, {r.images} "
                     f"images, {r.seconds:.1f} s)")
        lines += [f"    - {problem}" for problem in r.problems]
    lines += [f"loads from another host: {item}" for item in offhost]
    bad = sum(bool(r.problems) for r in reports)
    lines.append(f"{len(reports)} pages checked offline, {bad} with problems; "
                 f"{len(offhost)} resources from other hosts")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deqode.book.site_check",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("html", help="the built site, e.g. _build/smoke/_build/html")
    parser.add_argument("--screenshots", default=None, help="folder for full-page PNGs")
    args = parser.parse_args(argv)
    from deqode.book.browser import BrowserError

    started = time.perf_counter()
    try:
        offhost = offhost_resources(args.html)
        reports = check_pages(args.html, args.screenshots)
    except (FileNotFoundError, BrowserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(reports, offhost))
    print(f"site check took {time.perf_counter() - started:.1f} s")
    return 1 if offhost or any(r.problems for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())

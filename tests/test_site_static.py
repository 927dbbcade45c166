"""The site carries its own MathJax and loads nothing from another host (no browser needed)."""

from __future__ import annotations

import base64
import io
import tarfile

import pytest
import yaml

from deqode.book import mathjax
from deqode.book.site_check import OffHost, css_urls, is_offhost, offhost_in_html, offhost_resources
from deqode.paths import repo_root

PAGE = """<html><head>
<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>
<script src="../_static/local.js"></script>
<link rel="stylesheet" href="//fonts.googleapis.com/css?family=Lato">
<link rel="preload" as="font" href="http://fonts.example.org/a.woff2">
<link rel="canonical" href="https://example.org/page.html">
<link rel="stylesheet" href="_static/theme.css">
<style>/* url(https://in.a.comment/x.css) */ @import url("https://fonts.example.org/b.css");</style>
</head><body>
<a href="https://arxiv.org/abs/2310.09583">the paper</a>
<img src="data:image/png;base64,AAAA">
<img src="x.png" srcset="x.png 1x, https://img.example/x2.png 2x">
<iframe src="https://www.youtube.com/embed/x"></iframe>
<div style="background: url('https://img.example/bg.png')"></div>
</body></html>"""


def test_every_offhost_load_is_named_and_links_and_local_files_are_not():
    found = {(item.what, item.url) for item in offhost_in_html(PAGE, "p.html")}
    assert found == {
        ("<script src>", "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"),
        ("<link rel=stylesheet>", "//fonts.googleapis.com/css?family=Lato"),
        ("<link rel=preload>", "http://fonts.example.org/a.woff2"),
        ("<style> url", "https://fonts.example.org/b.css"),
        ("<img srcset>", "https://img.example/x2.png"),
        ("<iframe src>", "https://www.youtube.com/embed/x"),
        ("<div style> url", "https://img.example/bg.png"),
    }


def test_is_offhost():
    assert is_offhost("https://a.org/x.js") and is_offhost("//a.org/x.js")
    assert not any(map(is_offhost, ["_static/x.js", "../x.css", "data:font/woff2;base64,AA",
                                    "#top", "file:///tmp/x.js"]))


def test_css_urls_skip_comments():
    css = '/* url(https://a.org/c.woff) */ .x{src:url(fonts/a.woff2)} @import "https://b.org/d.css";'
    assert css_urls(css) == ["fonts/a.woff2", "https://b.org/d.css"]


def test_offhost_resources_reads_pages_and_stylesheets(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "a.html").write_text('<script src="_static/x.js"></script>')
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "t.css").write_text("@font-face{src:url(https://f.org/x.woff)}")
    assert offhost_resources(tmp_path) == [OffHost("_static/t.css", "css url", "https://f.org/x.woff")]
    (tmp_path / "book" / "a.html").write_text('<script src="https://cdn.org/x.js"></script>')
    assert [str(item) for item in offhost_resources(tmp_path)] == [
        "book/a.html: <script src> https://cdn.org/x.js", "_static/t.css: css url https://f.org/x.woff"]
    with pytest.raises(FileNotFoundError, match="make book"):
        offhost_resources(tmp_path / "missing")


# ---- the pinned MathJax ------------------------------------------------------------------------
def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_unpack_keeps_only_what_pages_load(tmp_path):
    data = _tarball({mathjax.ENTRY: b"entry", "es5/output/chtml/fonts/woff-v2/M.woff": b"font",
                     "es5/tex-svg-full.js": b"not needed", "es5/sre/mathmaps/fr.json": b"{}",
                     "LICENSE": b"Apache"})
    out = tmp_path / "mathjax"
    written = mathjax.unpack(data, out)
    assert written == sorted(["LICENSE", mathjax.ENTRY, "es5/output/chtml/fonts/woff-v2/M.woff"])
    assert (out / mathjax.ENTRY).read_bytes() == b"entry"
    assert not (out / "es5" / "tex-svg-full.js").exists()
    assert mathjax.VERSION in (out / "VERSION").read_text()
    with pytest.raises(mathjax.IntegrityError, match=r"no package/es5/tex-mml-chtml\.js"):
        mathjax.unpack(_tarball({"LICENSE": b"x"}), tmp_path / "other")


def test_a_tarball_other_than_the_pinned_release_is_refused(tmp_path):
    fake = tmp_path / "mathjax-3.2.2.tgz"
    fake.write_bytes(_tarball({mathjax.ENTRY: b"tampered"}))
    with pytest.raises(mathjax.IntegrityError, match=r"is not mathjax 3\.2\.2"):
        mathjax.fetch(tmp_path / "out", tarball=fake)
    assert not (tmp_path / "out").exists()
    assert mathjax.main(["--out", str(tmp_path / "out"), "--tarball", str(fake)]) == 2


def test_integrity_matches_npm_format():
    kind, digest = mathjax.integrity_of(b"").split("-", 1)
    assert kind == "sha512" and base64.b64decode(digest).hex() == (  # SHA-512 of nothing
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e")
    mathjax.verify(b"", mathjax.integrity_of(b""))
    with pytest.raises(mathjax.IntegrityError):
        mathjax.verify(b"x", mathjax.integrity_of(b""))


def test_the_book_config_serves_the_vendored_mathjax():
    config = yaml.safe_load((repo_root() / "_config.yml").read_text(encoding="utf-8"))
    sphinx = config["sphinx"]["config"]
    static = repo_root() / sphinx["html_static_path"][0]
    assert static / sphinx["mathjax_path"] == repo_root() / mathjax.DEFAULT_OUT / mathjax.ENTRY
    assert "sphinx_thebe" not in sphinx["extensions"]

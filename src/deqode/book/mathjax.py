"""The site's own MathJax: fetched from the npm registry at a pinned version, its hash verified.

The book's pages load MathJax from ``_static/mathjax/`` (``mathjax_path`` in ``_config.yml``), so
equations render with no network. ``make`` runs::

    python -m deqode.book.mathjax [--out book/_static/mathjax] [--tarball FILE]

which downloads the npm tarball (or reads ``--tarball``, e.g. one fetched by ``npm pack
mathjax@3.2.2``), checks it against the registry's published SHA-512 integrity and unpacks only the
files a page can load: the combined TeX/MathML-to-CommonHTML component, its fonts, the TeX
extensions it loads on demand and the accessibility parts its menu offers.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

from deqode.paths import resolve

VERSION = "3.2.2"
TARBALL_URL = f"https://registry.npmjs.org/mathjax/-/mathjax-{VERSION}.tgz"
#: ``npm view mathjax@3.2.2 dist.integrity``
INTEGRITY = ("sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+"
             "geW0OhGw==")
#: The component the pages load (``mathjax_path`` is ``mathjax/`` + this, relative to _static).
ENTRY = "es5/tex-mml-chtml.js"
#: Files (or folders, ending in ``/``) of the package's ``package/`` folder that the site carries.
KEEP = (
    ENTRY,
    "es5/input/tex/extensions/",
    "es5/output/chtml/fonts/woff-v2/",
    "es5/ui/",
    "es5/a11y/",
    "es5/sre/mathmaps/base.json",
    "es5/sre/mathmaps/en.json",
    "es5/sre/mathmaps/nemeth.json",
    "LICENSE",
)
DEFAULT_OUT = "book/_static/mathjax"


class IntegrityError(ValueError):
    """The tarball is not the pinned release."""


def integrity_of(data: bytes) -> str:
    """The npm ``dist.integrity`` string (SHA-512, base64) of ``data``."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def verify(data: bytes, expected: str = INTEGRITY, *, source: str = "the tarball") -> None:
    """Raise :class:`IntegrityError` unless ``data`` has the integrity ``expected``."""
    found = integrity_of(data)
    if found != expected:
        raise IntegrityError(
            f"{source} is not mathjax {VERSION}: its integrity is {found}, expected {expected}"
        )


def _kept(name: str) -> bool:
    return any(name == keep or (keep.endswith("/") and name.startswith(keep)) for keep in KEEP)


def unpack(data: bytes, out: str | Path) -> list[str]:
    """Write the :data:`KEEP` files of the npm tarball ``data`` into ``out`` (replaced whole, via a
    sibling folder); return their names relative to ``out``."""
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    written = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/")
            if not member.isfile() or not _kept(name) or ".." in Path(name).parts:
                continue
            target = partial / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            written.append(name)
    if ENTRY not in written:
        shutil.rmtree(partial, ignore_errors=True)
        raise IntegrityError(f"the tarball has no package/{ENTRY}")
    (partial / "VERSION").write_text(f"mathjax {VERSION} {INTEGRITY}\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    partial.replace(out)
    return sorted(written)


def download(url: str = TARBALL_URL, timeout: float = 120.0) -> bytes:
    """The bytes at ``url`` (the npm registry's tarball by default)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def fetch(out: str | Path = DEFAULT_OUT, tarball: str | Path | None = None) -> Path:
    """Put the pinned MathJax into ``out`` (relative paths: from the repository root), from
    ``tarball`` when given, else from the npm registry; the hash is checked either way."""
    out = resolve(out)
    if tarball is not None:
        data, source = Path(tarball).read_bytes(), str(tarball)
    else:
        data, source = download(), TARBALL_URL
    verify(data, source=source)
    unpack(data, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deqode.book.mathjax",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument("--tarball", default=None,
                        help=f"a local mathjax-{VERSION}.tgz instead of downloading {TARBALL_URL}")
    args = parser.parse_args(argv)
    try:
        out = fetch(args.out, args.tarball)
    except (OSError, IntegrityError, tarfile.TarError) as err:
        print(f"error: MathJax {VERSION} not installed: {err}", file=sys.stderr)
        return 2
    print(f"MathJax {VERSION} (hash verified) in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

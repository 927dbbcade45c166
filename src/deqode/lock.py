"""The locked environment: ``requirements/*.txt`` pin every package with its hashes.

``make lock`` (``python src/deqode/lock.py compile``) writes them with pip-tools from the ranges
in ``pyproject.toml``: :data:`LOCKS` names each lock and the extras it installs. The lock is for
:data:`PLATFORM`; on another platform, run ``make lock`` there (see the reproducibility page).
Each lock's header records :func:`dependency_digest` of ``pyproject.toml``, so a range changed
without regenerating the lock is caught by :func:`check` (``tests/test_lock.py``).
``environment.yml`` is written from the dev lock (:func:`environment_yml`).

``python src/deqode/lock.py measure`` times the book's install in a fresh clone and records the
time and the size of its venv in :data:`MEASUREMENT`, which the reproducibility page shows.

This module imports only the standard library and ``packaging`` (no torch), so that it runs as a
script in the small venv that holds pip-tools.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK_DIR = Path("requirements")
#: lock name -> the extras of ``deqode`` it installs. The book needs no dev tools; the
#: benchmarks it runs need torchdeq (``bench``). ``dev`` holds every extra.
LOCKS = {"dev": ("dev",), "book": ("book", "bench")}
PLATFORM = "Linux x86_64, CPython 3.11 (torch's CUDA wheels and their nvidia-* packages)"
PIP_TOOLS = "pip-tools==7.6.2"
DIGEST_LINE = "# pyproject-digest: "
MEASUREMENT = LOCK_DIR / "install-measurement.json"
#: pip-compile's options: hashes, setuptools/wheel/pip kept (``--allow-unsafe``: the editable
#: install builds without isolation from the locked setuptools), no machine paths written.
COMPILE_OPTIONS = ("--generate-hashes", "--allow-unsafe", "--all-build-deps", "--strip-extras",
                   "--no-emit-index-url", "--no-emit-find-links", "--no-header",
                   "--annotation-style", "line", "--quiet")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject(pyproject: Path) -> dict:
    return tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))


def dependency_digest(pyproject: Path) -> str:
    """sha256 of every table of ``pyproject`` that the locks are resolved from: the dependencies,
    the extras, ``requires-python`` and the build requirements."""
    data = _pyproject(pyproject)
    project = data.get("project", {})
    tables = {
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "requires-python": project.get("requires-python", ""),
        "build-requires": data.get("build-system", {}).get("requires", []),
    }
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()


def locked_versions(lock: Path) -> dict[str, str]:
    """canonical name -> pinned version of each ``name==version`` line of ``lock``."""
    return {canonical(n): v for n, v in PIN.findall(Path(lock).read_text(encoding="utf-8"))}


def recorded_digest(lock: Path) -> str | None:
    for line in Path(lock).read_text(encoding="utf-8").splitlines():
        if line.startswith(DIGEST_LINE):
            return line[len(DIGEST_LINE):].strip()
    return None


def requirements_of(pyproject: Path, extras: tuple[str, ...]) -> list[str]:
    """The requirement strings ``deqode[extras]`` asks for, self-references expanded, plus the
    build requirements (the editable install builds from the locked setuptools)."""
    data = _pyproject(pyproject)
    project = data["project"]
    optional = project.get("optional-dependencies", {})
    self_ref = re.compile(rf"^{re.escape(project['name'])}\[([^\]]+)\]$")
    out = list(project.get("dependencies", [])) + data.get("build-system", {}).get("requires", [])
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise ValueError(f"unknown extra {extra!r}; valid extras: {sorted(optional)}")
        seen.add(extra)
        for req in optional[extra]:
            inner = self_ref.match(req.replace(" ", ""))
            if inner:
                todo.extend(inner.group(1).split(","))
            else:
                out.append(req)
    return out


def check(root: Path = ROOT) -> list[str]:
    """What is wrong with the locks of ``root`` (an empty list: nothing): a digest that is not
    that of ``pyproject.toml``, a requirement not locked or locked at a version outside its range,
    a book lock that differs from the dev lock, an ``environment.yml`` not written from the lock."""
    from packaging.requirements import Requirement

    pyproject = root / "pyproject.toml"
    digest = dependency_digest(pyproject)
    problems = []
    versions = {}
    for name, extras in LOCKS.items():
        lock = root / LOCK_DIR / f"{name}.txt"
        if not lock.is_file():
            problems.append(f"{lock} is missing; run `make lock`")
            continue
        if recorded_digest(lock) != digest:
            problems.append(f"{lock} was not generated from this pyproject.toml (its dependency "
                            "tables changed since); run `make lock`")
        versions[name] = pinned = locked_versions(lock)
        for text in requirements_of(pyproject, extras):
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate():
                continue
            version = pinned.get(canonical(req.name))
            if version is None:
                problems.append(f"{lock}: {req.name} ({text}) is not locked; run `make lock`")
            elif not req.specifier.contains(version, prereleases=True):
                problems.append(f"{lock}: {req.name}=={version} does not satisfy {text!r}; "
                                "run `make lock`")
    if len(versions) == len(LOCKS):
        dev = versions["dev"]
        for package, version in versions["book"].items():
            if dev.get(package) != version:
                problems.append(f"book lock has {package}=={version}, dev lock "
                                f"{dev.get(package, 'nothing')}; run `make lock`")
        env = root / "environment.yml"
        if not env.is_file() or env.read_text(encoding="utf-8") != environment_yml(dev):
            problems.append(f"{env} is not the one written from {LOCK_DIR / 'dev.txt'}; "
                            "run `make lock`")
    return problems


def environment_yml(pinned: dict[str, str]) -> str:
    """The conda environment: Python 3.11 and pip, then every locked package at its version."""
    pins = "".join(f"      - {name}=={pinned[name]}\n" for name in sorted(pinned))
    return (
        "# Written by `make lock` from requirements/dev.txt: do not edit (tests/test_lock.py\n"
        f"# checks it). For {PLATFORM}; pip's hash checking is in the lock, not here.\n"
        "# conda users: `conda env create -f environment.yml && conda activate deqode`\n"
        "name: deqode\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip\n"
        f"  - pip:\n{pins}      - -e \".[dev]\"\n"
    )


def _header(name: str, digest: str) -> str:
    extras = ",".join(LOCKS[name])
    return (
        f"# The {name} environment: deqode[{extras}] with every package pinned and hashed.\n"
        "# Written by `make lock` (python src/deqode/lock.py compile, "
        f"{PIP_TOOLS}): do not edit.\n"
        f"# For {PLATFORM}.\n"
        "# Installed by `make setup` (pip install --require-hashes -r this file, then\n"
        "# pip install --no-deps --no-build-isolation -e .).\n"
        f"{DIGEST_LINE}{digest}\n"
    )


def _drop_self(text: str) -> str:
    """pip-compile lists the project itself (``deqode @ file:///...``) for its self-referencing
    extras; the editable install is a separate step, so the entry (and its warning) goes."""
    text = re.sub(r"# WARNING: pip install will require.*\n(?:#.*\n)*", "", text)
    return re.sub(r"^deqode @ file://\S*.*\n(?:    .*\n)*", "", text, flags=re.MULTILINE)


def compile_locks(pip_compile: str, root: Path = ROOT, upgrade: bool = False) -> None:
    """Write every lock with pip-compile (the dev lock first; the book lock starts from it, so
    that both pin the same versions), then ``environment.yml``."""
    digest = dependency_digest(root / "pyproject.toml")
    (root / LOCK_DIR).mkdir(exist_ok=True)
    for name, extras in LOCKS.items():
        lock = root / LOCK_DIR / f"{name}.txt"
        if name != "dev":
            shutil.copyfile(root / LOCK_DIR / "dev.txt", lock)  # its pins and hashes, reused
        command = [pip_compile, *COMPILE_OPTIONS, "--output-file", str(lock.relative_to(root))]
        command += [f"--extra={extra}" for extra in extras]
        command += ["--upgrade"] if upgrade and name == "dev" else []
        print("$", " ".join(command), flush=True)
        subprocess.run([*command, "pyproject.toml"], cwd=root, check=True)
        text = _drop_self(lock.read_text(encoding="utf-8"))
        lock.write_text(_header(name, digest) + text, encoding="utf-8")
    dev = locked_versions(root / LOCK_DIR / "dev.txt")
    (root / "environment.yml").write_text(environment_yml(dev), encoding="utf-8")


def measure(target: str, root: Path = ROOT, python: str | None = None) -> dict:
    """Clone ``root`` afresh, time ``make <target>`` there (a new venv) and measure the venv."""
    with tempfile.TemporaryDirectory(prefix="deqode-install-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(root), str(clone)],
                       check=True)
        command = ["make", "--no-print-directory", target]
        command += [f"PYTHON={python}"] if python else []
        load = os.getloadavg()[0]  # other work on the machine slows the install
        started = time.monotonic()  # without pip's cache: every package fetched or read anew
        subprocess.run(command, cwd=clone, check=True, env={**os.environ, "PIP_NO_CACHE_DIR": "1"})
        seconds = time.monotonic() - started
        venv = clone / ".venv"
        size = sum(p.lstat().st_size for p in venv.rglob("*") if not p.is_symlink())
        packages = len(list((venv / "lib").glob("python*/site-packages/*.dist-info")))
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=clone,
                                capture_output=True, text=True, check=True).stdout.strip()
    return {
        "target": target,
        "seconds": round(seconds, 1),
        "venv_bytes": size,
        "packages": packages,
        "commit": commit,
        "measured_on": _dt.date.today().isoformat(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores",
        "python": platform.python_version(),
        "load_average": round(load, 1),
        "command": f"make measure-install ({' '.join(command)} in a fresh clone)",
    }


def install_section(root: Path = ROOT) -> str:
    """The reproducibility page's lines on the book's install, from :data:`MEASUREMENT`."""
    path = root / MEASUREMENT
    if not path.is_file():
        return f"The install has not been measured ({MEASUREMENT} is missing).\n"
    m = json.loads(path.read_text(encoding="utf-8"))
    load = f", load average {m['load_average']} at the start" if "load_average" in m else ""
    if "conditions" in m:  # what was seen during a run whose machine was busy
        load += f" ({m['conditions']})"
    return (
        f"`make {m['target']}` in a fresh clone took **{m['seconds'] / 60:.1f} min** and made a "
        f"venv of **{m['venv_bytes'] / 2**30:.1f} GiB** ({m['packages']} packages), measured "
        f"on {m['measured_on']} on {m['machine']}{load} (Python {m['python']}, commit "
        f"`{m['commit']}`), without pip's cache. "
        f"To measure again: `{m['command'].split(' (')[0]}` writes `{MEASUREMENT}`.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python src/deqode/lock.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    comp = sub.add_parser("compile", help="write requirements/*.txt and environment.yml")
    comp.add_argument("--pip-compile", default="pip-compile", help="the pip-compile to run")
    comp.add_argument("--upgrade", action="store_true",
                      help="newest versions within the ranges (default: keep the locked ones)")
    sub.add_parser("check", help="exit 1 when a lock or environment.yml is stale")
    meas = sub.add_parser("measure", help=f"time `make TARGET` in a fresh clone -> {MEASUREMENT}")
    meas.add_argument("--target", default="setup-book")
    meas.add_argument("--python", help="the Python the clone's venv is made with")
    args = parser.parse_args(argv)
    if args.command == "compile":
        compile_locks(args.pip_compile, upgrade=args.upgrade)
        return 0
    if args.command == "check":
        problems = check()
        print("\n".join(problems) or "locks are up to date")
        return 1 if problems else 0
    record = measure(args.target, python=args.python)
    (ROOT / MEASUREMENT).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(install_section())
    return 0


if __name__ == "__main__":
    sys.exit(main())

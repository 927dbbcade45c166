"""Small C loops, compiled on first use, for the two places where torch's per-call cost is most of
the work on a CPU: the Nesterov solver's step (:mod:`deqode.solvers.nesterov_kernel`) and the
training loop's gradient norm (:mod:`deqode.train.gradient_norm`).

Each user checks its loop against torch on random inputs before trusting it, and falls back to
torch's own calls where the check fails, no C compiler is found (``cc``, or ``$CC``), or
``DEQODE_NATIVE=0`` is set. The library is built for the host CPU (``-march=native``), with
``-ffp-contract=off`` (no product and sum fused into an FMA unless the source says ``fma``), and
cached under ``$XDG_CACHE_HOME/deqode/native`` (or ``~/.cache``), keyed by the source, the
compiler and the CPU; it is written atomically, so concurrent processes may build it at once.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

ENV_SWITCH = "DEQODE_NATIVE"
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd",
         "-fPIC", "-shared")

SOURCE = r"""
#include <math.h>
#include <stdint.h>

/* One Nesterov step of n elements (deqode/solvers/nesterov_kernel.py):
   u_out = fma(f, c, u*beta); d = f*ch; [d = u*phi + d]; d = fma(u_out, bh, d); y_out = y + d;
   [ahead = y_out + u_out*phi_next]. u_out may be u (in place); other outputs must not overlap
   the inputs. */
#define NAG_STEP(NAME, T, FMA)                                                                \
void NAME(int64_t n, const T *y, const T *u, const T *f, T *u_out, T *restrict y_out,       \
          T *restrict ahead, T beta, T c, T ch, T phi, int shift, T bh, T phi_next,          \
          int next) {                                                                        \
    for (int64_t i = 0; i < n; i++) {                                                        \
        T ui = u[i], fi = f[i];                                                              \
        T un = FMA(fi, c, ui * beta);                                                        \
        T d = fi * ch;                                                                       \
        if (shift) d = ui * phi + d;                                                         \
        d = FMA(un, bh, d);                                                                  \
        T yn = y[i] + d;                                                                     \
        u_out[i] = un;                                                                       \
        y_out[i] = yn;                                                                       \
        if (next) ahead[i] = yn + un * phi_next;                                             \
    }                                                                                        \
}

NAG_STEP(nag_step_float, float, fmaf)
NAG_STEP(nag_step_double, double, fma)

/* The sum of squares of `count` buffers (deqode/train/gradient_norm.py), accumulated in double
   (a vectorised reduction: its order is the compiler's); NaN and infinity propagate. */
#define SUM_OF_SQUARES(NAME, T)                                                               \
double NAME(int64_t count, T *const *buffers, const int64_t *sizes) {                        \
    double total = 0.0;                                                                      \
    for (int64_t j = 0; j < count; j++) {                                                    \
        const T *x = buffers[j];                                                             \
        int64_t n = sizes[j];                                                                \
        double part = 0.0;                                                                   \
        _Pragma("omp simd reduction(+:part)")                                                \
        for (int64_t i = 0; i < n; i++) {                                                    \
            double v = x[i];                                                                 \
            part += v * v;                                                                   \
        }                                                                                    \
        total += part;                                                                       \
    }                                                                                        \
    return total;                                                                            \
}

SUM_OF_SQUARES(sum_of_squares_float, const float)
SUM_OF_SQUARES(sum_of_squares_double, const double)
"""

_cache: dict[str, ctypes.CDLL | None] = {}


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "deqode" / "native"


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU model and its flags (Linux), else the
    platform's processor string."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def enabled() -> bool:
    """False when ``DEQODE_NATIVE=0``."""
    return os.environ.get(ENV_SWITCH, "1") != "0"


def library() -> ctypes.CDLL | None:
    """The compiled library (built on first use in a process, then cached on disk), or None when
    switched off, without a C compiler, or when the build fails (a warning says why)."""
    if not enabled():
        return None
    source = _cache.get("source")
    if source == SOURCE and "library" in _cache:
        return _cache["library"]
    built = _build()
    _cache.update(source=SOURCE, library=built)
    return built


def checked(state: dict, bind: Callable[[ctypes.CDLL], dict],
            agrees: Callable[[dict], bool], refusal: str) -> dict | None:
    """The library's functions as ``bind`` types them, once ``agrees`` has accepted them, or
    None (not built, switched off, or refused: then ``refusal`` is warned). Checked once per
    process: ``state`` (the caller's module dict) keeps the outcome."""
    if "ok" not in state:
        built = library()
        functions = None if built is None else bind(built)
        ok = functions is not None and agrees(functions)
        if functions is not None and not ok:
            warnings.warn(f"deqode: {refusal}", RuntimeWarning, stacklevel=3)
        if ok:
            state["functions"] = functions
        state["ok"] = ok
    return state.get("functions") if state["ok"] else None


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def library_path() -> Path | None:
    """Where the library for this source, compiler and CPU is cached (None without a compiler)."""
    compiler = _compiler()
    if compiler is None:
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    key = hashlib.sha256("\0".join([SOURCE, compiler, version, " ".join(FLAGS),
                                    _cpu_signature()]).encode()).hexdigest()[:20]
    return cache_dir() / f"deqode_{key}.so"


def _build() -> ctypes.CDLL | None:
    target, compiler = library_path(), _compiler()
    if target is None or compiler is None:
        return None
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as work:
                source = Path(work) / "deqode.c"
                source.write_text(SOURCE)
                built = Path(work) / "deqode.so"
                subprocess.run([compiler, *FLAGS, "-o", str(built), str(source)],
                               capture_output=True, text=True, timeout=120, check=True)
                os.replace(built, target)  # atomic: a concurrent build writes the same file
        except (OSError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", "") or err
            warnings.warn(f"deqode: the native loops did not build ({detail}); torch's calls "
                          "are used instead", RuntimeWarning, stacklevel=3)
            return None
    try:
        return ctypes.CDLL(str(target))
    except OSError as err:  # a cached file this process cannot load: build it afresh next time
        target.unlink(missing_ok=True)
        warnings.warn(f"deqode: the native loops did not load ({err}); torch's calls are used "
                      "instead", RuntimeWarning, stacklevel=3)
        return None


__all__ = ["ENV_SWITCH", "FLAGS", "SOURCE", "cache_dir", "checked", "enabled", "library",
           "library_path"]

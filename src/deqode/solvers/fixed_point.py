"""Fixed-point solvers (Picard, Anderson, Broyden) behind one entry point, :func:`fixed_point`.

Convention used throughout deqode: a fixed point satisfies ``z* = f(z*)``; the residual is
``g(z) = z - f(z)``. Residuals are measured per sample on the flattened state,

* absolute: ``||f(z) - z||_2``,
* relative: ``||f(z) - z||_2 / (||f(z)||_2 + 1e-9)``,

and the batch value is the maximum over samples. A solve has converged when the batch value of the
returned iterate is ``<= tol``.

Every solver runs without an autograd graph, never raises on numerical trouble, and returns the best
iterate it saw together with a :class:`SolverInfo` record (residual traces, NFE, flags).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from deqode.choices import check_choice

METHODS = ("picard", "anderson", "broyden")
STOP_MODES = ("abs", "rel")
#: Options per method with their defaults (anything else is an error, never silently dropped).
OPTIONS: dict[str, dict[str, object]] = {
    "picard": {"beta": 1.0},
    "anderson": {"m": 5, "lam": 1e-4, "beta": 1.0},
    "broyden": {"m": 30, "line_search": False},
}
REL_EPS = 1e-9  # the eps in the relative residual
LINE_SEARCH_STEPS = 4  # halvings tried by Broyden's backtracking line search


@dataclass
class SolverInfo:
    """What a solve did. Residual lists hold the batch value (max over samples) per iterate.

    ``residuals`` is the list of the chosen ``stop_mode``; entry 0 belongs to the initial iterate,
    so ``len(residuals) == iterations + 1``. ``final_residual`` is the batch value of the returned
    iterate; ``best_iteration`` the latest iteration that contributed to it (per-sample best).
    """

    method: str
    stop_mode: str = "rel"
    iterations: int = 0
    nfe: int = 0
    converged: bool = False
    diverged: bool = False
    abs_residuals: list[float] = field(default_factory=list)
    rel_residuals: list[float] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)
    final_residual: float = math.inf
    best_iteration: int = 0


def batch_view(t: Tensor) -> Tensor:
    """``(B, n)`` view of a batched tensor ``(B, ...)``; a 0-D or 1-D tensor is one sample."""
    return t.reshape(1, -1) if t.dim() <= 1 else t.reshape(t.shape[0], -1)


class _Trace:
    """Evaluates f on flattened iterates, records residual traces, keeps the per-sample best."""

    def __init__(self, f: Callable[[Tensor], Tensor], z0: Tensor, info: SolverInfo, tol: float):
        self.f, self.shape, self.info, self.tol = f, z0.shape, info, tol
        batch = batch_view(z0).shape[0]
        self.best_z = batch_view(z0).clone()
        self.best_res = z0.new_full((batch,), math.inf)
        self.best_iter = torch.zeros(batch, dtype=torch.long, device=z0.device)
        self._best_max = math.inf  # best_res.max(), kept by record
        info.residuals = info.rel_residuals if info.stop_mode == "rel" else info.abs_residuals

    def evaluate(self, z: Tensor) -> Tensor:
        """f at the flattened iterate ``z`` (counts one NFE)."""
        self.info.nfe += 1
        fz = self.f(z.reshape(self.shape))
        if fz.shape != self.shape:
            raise ValueError(f"f returned shape {tuple(fz.shape)} for input {tuple(self.shape)}")
        return batch_view(fz)

    def record(self, z: Tensor, fz: Tensor, diff: Tensor | None = None) -> None:
        """Append the residuals of iterate ``z`` and keep it where it beats a sample's best
        (``diff``: ``fz - z`` if the caller already has it)."""
        info = self.info
        abs_res = (fz - z if diff is None else diff).norm(dim=1)
        fz_norm = fz.norm(dim=1)
        rel_res = abs_res / (fz_norm + REL_EPS)
        # a finite sum of the norms implies finite z and f(z) (torch.isfinite is four kernels),
        # so the elementwise scan runs only when it is not
        all_finite = math.isfinite((abs_res + fz_norm).sum().item())
        if not all_finite:
            finite = torch.isfinite(z).all(1) & torch.isfinite(fz).all(1)
            abs_res, rel_res = (torch.where(finite, r, math.inf) for r in (abs_res, rel_res))
            all_finite = bool(finite.all())
        res = rel_res if info.stop_mode == "rel" else abs_res
        better = res < self.best_res
        torch.where(better[:, None], z, self.best_z, out=self.best_z)
        torch.where(better, res, self.best_res, out=self.best_res)
        self.best_iter.masked_fill_(better, len(info.residuals))
        abs_max, rel_max, self._best_max = torch.stack(
            (abs_res.max(), rel_res.max(), self.best_res.max())).tolist()
        info.abs_residuals.append(abs_max)
        info.rel_residuals.append(rel_max)
        info.diverged = info.diverged or not all_finite

    def step(self, z: Tensor) -> Tensor:
        """Evaluate and record iterate ``z``; returns ``f(z)`` flattened."""
        fz = self.evaluate(z)
        self.record(z, fz)
        return fz

    @property
    def stop(self) -> bool:
        """Non-finite values appeared, or every sample's best iterate meets the tolerance."""
        return self.info.diverged or self._best_max <= self.tol


def _picard(trace: _Trace, z: Tensor, max_iter: int, beta: float) -> None:
    """Damped Picard iteration ``z <- (1 - beta) z + beta f(z)``."""
    fz = trace.step(z)
    for _ in range(max_iter):
        if trace.stop:
            break
        z = z + beta * (fz - z)
        fz = trace.step(z)


def _anderson(trace: _Trace, z: Tensor, max_iter: int, m: int, lam: float, beta: float) -> None:
    """Anderson acceleration (type II) with memory ``m``, per sample.

    The weights ``alpha`` minimise ``||sum_i alpha_i g_i||`` subject to ``sum_i alpha_i = 1``
    over the last ``m`` residuals ``g_i = f(z_i) - z_i``; with ``G`` normalised to unit Frobenius
    norm this is ``alpha ∝ (G G^T + lam I)^{-1} 1`` (Tikhonov regularisation relative to the
    residual scale).
    Samples whose system is singular or non-finite fall back to a plain Picard step.
    The next iterate mixes ``beta * sum alpha_i f(z_i) + (1 - beta) * sum alpha_i z_i``.
    """
    batch, dim = z.shape
    # ring buffers of the last m iterates, their images and residuals (slot k % m holds iterate k)
    xs, fs, gs, unit = (z.new_zeros(batch, m, dim) for _ in range(4))  # unit: gs normalised
    xs[:, 0], fs[:, 0] = z, trace.evaluate(z)
    trace.record(z, fs[:, 0], torch.sub(fs[:, 0], xs[:, 0], out=gs[:, 0]))
    tiny = torch.finfo(z.dtype).tiny
    ridge = lam * torch.eye(m, dtype=z.dtype, device=z.device)
    ones = z.new_ones(batch, m)
    for k in range(1, max_iter + 1):
        if trace.stop:
            break
        n = min(k, m)
        scale = gs[:, :n].flatten(1).norm(dim=1).clamp_min(tiny)[:, None, None]
        g = torch.div(gs[:, :n], scale, out=unit[:, :n])
        gram = torch.baddbmm(ridge[:n, :n], g, g.transpose(1, 2))
        y, status = torch.linalg.solve_ex(gram, ones[:, :n])
        total = y.sum(1)
        alpha = y / total[:, None]
        worst_status, least_total, weight_sum = torch.stack(
            (status.max().to(alpha.dtype), total.min(), alpha.sum())).tolist()
        if worst_status != 0 or not least_total > 0 or not math.isfinite(weight_sum):
            # some sample failed: those fall back to the latest iterate's Picard step
            ok = (status == 0) & torch.isfinite(alpha).all(1) & (total > 0)
            last = torch.zeros_like(alpha[0])
            last[(k - 1) % m] = 1.0
            alpha = torch.where(ok[:, None], alpha, last)
        mixed = fs[:, :n] if beta == 1.0 else beta * fs[:, :n] + (1 - beta) * xs[:, :n]
        slot = k % m
        # alpha comes out of the solve column-major; a row-major copy keeps bmm off its slow
        # per-sample path (same values)
        z = torch.bmm(alpha.contiguous()[:, None, :], mixed).squeeze(1)
        xs[:, slot], fs[:, slot] = z, trace.evaluate(z)
        trace.record(z, fs[:, slot], torch.sub(fs[:, slot], xs[:, slot], out=gs[:, slot]))


def _lowrank(u: Tensor, v: Tensor, x: Tensor, transpose: bool = False) -> Tensor:
    """``(I + sum_i u_i v_i^T) x`` per sample, or ``x^T (I + sum_i u_i v_i^T)`` if ``transpose``.

    ``u, v``: (B, n, D), the n stored updates (n may be 0). Two batched products in the storage
    layout (an einsum here would copy ``u`` into (B, D, n) on every call).
    """
    if transpose:
        u, v = v, u
    if u.shape[1] == 0:
        return x
    coeff = torch.bmm(v, x.unsqueeze(2))  # (B, n, 1): v_i^T x
    return torch.baddbmm(x.unsqueeze(1), coeff.transpose(1, 2), u).squeeze(1)


def _broyden(trace: _Trace, z: Tensor, max_iter: int, m: int, line_search: bool) -> None:
    """Good Broyden on ``g(z) = z - f(z) = 0`` with a limited-memory inverse Jacobian, per sample.

    ``H ≈ (dg/dz)^{-1}`` starts at the identity (so the first step is a Picard step) and is kept as
    ``I + sum u_i v_i^T`` over at most ``m`` updates; a full memory restarts from ``H = I``
    (overwriting the oldest update instead, as some DEQ codes do, can blow up). Step
    ``dz = -H g``; after the move ``s = Δz``, ``y = Δg`` the good-Broyden inverse update is
    ``H <- H + (s - H y)(s^T H) / (s^T H y)``, skipped per sample when ``s^T H y`` is ~0.
    ``line_search=True`` halves the step (per sample, up to 4 times) while ``||g||`` does not drop.
    """
    batch, dim = z.shape
    us, vs = z.new_zeros(batch, m, dim), z.new_zeros(batch, m, dim)
    filled = 0  # updates stored in us[:, :filled], vs[:, :filled]
    g = z - trace.step(z)
    hg = g  # H g for the current H (= I so far)
    for _ in range(max_iter):
        if trace.stop:
            break
        dz = -hg
        step = z.new_ones(batch, 1)
        for attempt in range(LINE_SEARCH_STEPS + 1 if line_search else 1):
            z_new = z + step * dz
            fz_new = trace.evaluate(z_new)
            worse = ~((z_new - fz_new).norm(dim=1) < g.norm(dim=1))
            if attempt == LINE_SEARCH_STEPS or not worse.any():
                break
            step = torch.where(worse[:, None], step / 2, step)
        trace.record(z_new, fz_new)
        g_new = z_new - fz_new
        s = z_new - z
        if filled == m:  # memory full: restart from H = I
            filled = 0
            hg = g
        u, v = us[:, :filled], vs[:, :filled]
        hg_new = _lowrank(u, v, g_new)
        hy = hg_new - hg  # H y = H g_new - H g: one product instead of two
        denom = (s * hy).sum(1, keepdim=True)
        ok = denom.abs() > 1e-12 * s.norm(dim=1, keepdim=True) * hy.norm(dim=1, keepdim=True)
        ok = ok & (denom != 0) & torch.isfinite(denom)
        sh = _lowrank(u, v, s, transpose=True)
        u_new = torch.where(ok, (s - hy) / denom, 0.0)
        v_new = torch.where(ok, sh, 0.0)
        us[:, filled], vs[:, filled] = u_new, v_new
        filled += 1
        hg = hg_new + u_new * (v_new * g_new).sum(1, keepdim=True)  # the updated H times g_new
        z, g = z_new, g_new


def fixed_point(
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    method: str = "broyden",
    tol: float = 1e-6,
    max_iter: int = 50,
    stop_mode: str = "rel",
    **options: object,
) -> tuple[Tensor, SolverInfo]:
    """Solve ``z = f(z)`` from ``z0`` with ``method`` in ``"picard" | "anderson" | "broyden"``.

    Args:
        f: maps a tensor of ``z0``'s shape to one of the same shape. ``z0`` is batched along its
            first dimension (any trailing shape, flattened per sample); a 0-D/1-D ``z0`` is a single
            sample. Samples are solved independently (per-sample least squares / Jacobians), so
            ``f`` must not mix samples.
        tol, stop_mode: stop when the batch residual (max over samples of ``||f(z) - z||`` for
            ``"abs"``, of ``||f(z) - z|| / (||f(z)|| + 1e-9)`` for ``"rel"``) is ``<= tol``.
        max_iter: at most this many updates after the initial iterate (NFE = ``max_iter + 1``
            without line search).
        options: per method (:data:`OPTIONS`): picard ``beta`` (damping); anderson ``m`` (memory),
            ``lam`` (regularisation relative to the residual scale), ``beta`` (mixing); broyden
            ``m`` (memory of low-rank updates), ``line_search`` (bool, off by default).

    Returns:
        The best iterate, chosen per sample (each sample's lowest-residual iterate, so the returned
        batch residual is never worse than any single iterate's), with the shape, dtype and device
        of ``z0``; and a :class:`SolverInfo`. Non-finite values stop the solve with
        ``diverged=True``, ``converged=False`` and the best finite iterates returned; nothing raises
        except invalid arguments (an unknown method or option raises ``UnknownChoiceError``).
    """
    check_choice("fixed-point method", method, METHODS)
    check_choice("stop_mode", stop_mode, STOP_MODES)
    for key in options:
        check_choice(f"option of method {method!r}", key, OPTIONS[method])
    if not z0.is_floating_point():
        raise TypeError(f"z0 must be a floating-point tensor, got {z0.dtype}")
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    settings = {**OPTIONS[method], **options}
    info = SolverInfo(method=method, stop_mode=stop_mode)
    with torch.no_grad():
        trace = _Trace(f, z0.detach(), info, tol)
        z = batch_view(z0.detach()).clone()
        if method == "picard":
            _picard(trace, z, max_iter, float(settings["beta"]))
        elif method == "anderson":
            m, lam, beta = int(settings["m"]), float(settings["lam"]), float(settings["beta"])
            _anderson(trace, z, max_iter, m, lam, beta)
        else:
            _broyden(trace, z, max_iter, int(settings["m"]), bool(settings["line_search"]))
    info.iterations = len(info.residuals) - 1
    info.final_residual = trace.best_res.max().item()
    info.best_iteration = int(trace.best_iter.max().item())
    info.converged = not info.diverged and info.final_residual <= tol
    return trace.best_z.reshape(z0.shape), info


__all__ = ["METHODS", "OPTIONS", "STOP_MODES", "SolverInfo", "batch_view", "fixed_point"]

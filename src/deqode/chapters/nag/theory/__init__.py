"""Consistency, convergence and stability ("CCS") of the Nesterov ODE solver: experiments E0-E6.

Akhtar, "On Tuning Neural ODE for Stability, Consistency and Faster Convergence" (arXiv
2312.01657, 2023) proposes a Nesterov-accelerated-gradient (NAG) ODE solver; its update equations
are not transcribed, so :mod:`deqode.solvers.nesterov` implements a **reconstruction**, and the
book chapter ``10_nag_theory`` checks it against classical linear-multistep theory (Hairer,
Nørsett & Wanner, Solving Ordinary Differential Equations I, Chapter III). Each function here
computes one experiment; the notebook prints, plots and asserts, and ``tests/test_nesterov.py``
asserts the same conditions.

* E0 :func:`symbolic_lmm`: ρ, σ and the error constants C_0..C_2 with sympy, for a general step
  coefficient c and for c = 1 and c = 1 - β (numerically: :func:`error_constants`,
  :func:`lmm_order`); :func:`rho_roots` for the root condition.
* E1 :func:`order_study`: global error at t1 against closed-form solutions of three test ODEs
  (:data:`PROBLEMS`), the least-squares order over the finest step sizes (:func:`fit_order`).
* E2 :func:`real_stability_interval` (grid search) against :func:`stability_interval_closed_form`;
  :func:`max_root_modulus` on a complex grid for the region plots, with Runge-Kutta references.
* E3 :func:`unscaled_study`: the c = 1 variant integrates ``dx/dt = f/(1 - β)``.
* E4 :func:`schedule_study`: the ``(k-1)/(k+2)`` schedule converges to the memory ODE
  ``x' = u, u' = (3/t)(f - u)`` (:func:`memory_ode_linear`), not to ``x' = f``.
* E5 :func:`reference_loop`: a standalone tensor loop of the two-sequence rule, to compare with
  ``odeint(method="nesterov")`` (:func:`plugin_checks`).
* E6 :func:`adjoint_gradient_study`: ``odeint`` vs ``odeint_adjoint`` gradients as h shrinks.

Everything runs in float64 on the CPU in seconds. The error-constant convention is the standard
``C_q = Σ_j j^q α_j / q! - Σ_j j^(q-1) β_j / (q-1)!`` for ``Σ α_j x_{k+j} = h Σ β_j f_{k+j}``.

Modules: :mod:`.lmm` (E0, E2), :mod:`.problems` (E1), :mod:`.studies` (E3-E6, table T1),
:mod:`.figures` (F1-F4, F10).
"""

from __future__ import annotations

from deqode.chapters.nag.theory import figures, lmm, problems, studies
from deqode.chapters.nag.theory.figures import *  # noqa: F403
from deqode.chapters.nag.theory.lmm import *  # noqa: F403
from deqode.chapters.nag.theory.problems import *  # noqa: F403
from deqode.chapters.nag.theory.studies import *  # noqa: F403

__all__ = sorted({*figures.__all__, *lmm.__all__, *problems.__all__, *studies.__all__})

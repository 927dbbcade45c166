"""Chapter "Two sides of one coin: the homotopy link": the toy problems and the checks H1-H10.

Ding et al., "Two Sides of the Same Coin: Bridging Deep Equilibrium Models and Neural ODEs via
Homotopy Continuation" (NeurIPS 2023), Fig. 1, read through homotopy continuation (Nocedal &
Wright, Numerical Optimization, §11.3). Every check is a function that runs in well under a few
seconds on a CPU and returns a :class:`CheckRecord` holding the measured numbers and the paths
needed for the plots; its :class:`Check` (``H1``, ..., ``TURNING_POINT``) states the claim and the
conditions the book asserts on those numbers (:meth:`CheckRecord.conditions`). The
notebook ``01_homotopy_link`` prints and asserts them next to the text;
``tests/test_homotopy_link.py`` asserts the same conditions. The checks and their thresholds are
our derivation, not the paper's.

Common toy [our construction; the input scale and the thresholds are our choice]:
``f(z) = tanh(W z + U x)``, ``n = 5``, ``U = I``, ``W`` Gaussian rescaled to ``||W||_2 = 0.9`` (a
contraction, so every homotopy path below exists and has no turning point), float64, seeded.
The input is drawn as ``x ~ N(0, x_scale² I)`` with ``x_scale = 0.1``: a small input keeps
``tanh`` near its linear range, so ``J_f(z*) ≈ W`` and the spectrum that sets the rate of the
Picard iteration and of the naive flow is that of ``W``, not of a saturated ``tanh``.

Conventions: fixed point ``z* = f(z*)``; residual ``g(z) = z - f(z)``; norms are 2-norms. The
toys do not depend on the run profile: the chapter is identical in ``smoke`` and ``paper``.

Modules: :mod:`.problems` (the toys), :mod:`.records` (asserted conditions), :mod:`.checks`
(H1-H7, Broyden as quasi-Newton), :mod:`.readings` (H8-H10, the turning point), :mod:`.figures`
(P1-P4).
"""

from __future__ import annotations

from deqode.chapters.homotopy_link import checks, figures, problems, readings, records
from deqode.chapters.homotopy_link.checks import *  # noqa: F403
from deqode.chapters.homotopy_link.figures import *  # noqa: F403
from deqode.chapters.homotopy_link.problems import *  # noqa: F403
from deqode.chapters.homotopy_link.readings import *  # noqa: F403
from deqode.chapters.homotopy_link.records import *  # noqa: F403

__all__ = sorted({*checks.__all__, *figures.__all__, *problems.__all__, *readings.__all__,
                  *records.__all__})

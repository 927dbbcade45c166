"""Continuous DEQ chapter (Pal, Edelman & Rackauckas, arXiv 2201.12240): runs, tables, figures.

Everything the chapter's notebooks (05–09) show comes from this package (spec
``continuous-deq.md`` §6), split by concern:

* :mod:`.configs` — run configurations of Tables 1–4 per profile (smoke, cpu, paper), registered
  with :mod:`deqode.chapters` and trained by :func:`deqode.train.fit`;
* :mod:`.runs` — training rows over several seeds, per-run summaries (whole-training time and
  NFE), seed aggregates and the plateau check of the cpu profile;
* :mod:`.reference` — the paper's numbers from ``data/reference/continuous_deq.csv``, the
  arithmetic behind its headline claims and the Figure 1 audit;
* :mod:`.verdicts` — the decision rules of the chapter's claims (thresholds as constants);
* :mod:`.probes` — parameter counts and probes of trained models (GMRES iterations, solves);
* :mod:`.timing` — per-step timing at the paper's real sizes (random inputs, untrained weights);
* :mod:`.figures` — the chapter's figures.
"""

from deqode.chapters.continuous_deq.configs import *  # noqa: F403
from deqode.chapters.continuous_deq.configs import __all__ as _configs_all
from deqode.chapters.continuous_deq.figures import *  # noqa: F403
from deqode.chapters.continuous_deq.figures import __all__ as _figures_all
from deqode.chapters.continuous_deq.probes import *  # noqa: F403
from deqode.chapters.continuous_deq.probes import __all__ as _probes_all
from deqode.chapters.continuous_deq.reference import *  # noqa: F403
from deqode.chapters.continuous_deq.reference import __all__ as _reference_all
from deqode.chapters.continuous_deq.runs import *  # noqa: F403
from deqode.chapters.continuous_deq.runs import __all__ as _runs_all
from deqode.chapters.continuous_deq.timing import *  # noqa: F403
from deqode.chapters.continuous_deq.timing import __all__ as _timing_all
from deqode.chapters.continuous_deq.verdicts import *  # noqa: F403
from deqode.chapters.continuous_deq.verdicts import __all__ as _verdicts_all

__all__ = [*_configs_all, *_figures_all, *_probes_all, *_reference_all, *_runs_all,
           *_timing_all, *_verdicts_all]

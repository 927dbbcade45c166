"""Book tooling: execute the notebooks, assemble and check the site, and what notebooks share
(the run contract, plots, the claims ledger, benchmarks, schematics). It never imports a chapter.

``python -m deqode.book`` runs :func:`deqode.book.build.main`.
"""

"""deqode: DEQs and Neural ODEs as two sides of one coin, linked by homotopy continuation."""

from deqode import solvers
from deqode.solvers import nesterov as _nesterov

_nesterov.register()  # odeint(..., method="nesterov") and odeint_adjoint, idempotent

__all__ = ["solvers"]
__version__ = "0.1.0"

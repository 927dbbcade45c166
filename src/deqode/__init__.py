"""deqode: DEQs and Neural ODEs as two sides of one coin, linked by homotopy continuation."""

from deqode import solvers

__all__ = ["solvers"]
__version__ = "0.1.0"

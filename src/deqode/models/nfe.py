"""The one NFE protocol of deqode's models, read by :func:`deqode.metrics.read_nfe`.

NFE (number of function evaluations) is the cost measure of implicit models: Chen et al.
(NeurIPS 2018, §3 and Fig. 3) count evaluations of the ODE field; Bai et al. (NeurIPS 2019, §4)
count evaluations of the DEQ layer and the backward solve's vector-Jacobian products.
"""

from __future__ import annotations


class CountsNFE:
    """Mixin of every model that counts evaluations of its implicit function.

    * ``nfe_forward``: evaluations in the last forward pass (an attribute or a property);
    * ``nfe_backward``: evaluations or vector-Jacobian products in the last backward pass;
      ``None`` (the class default) where the model does not count its backward;
    * :meth:`reset_nfe` zeroes both. Models whose counts live elsewhere (a solve's record, a
      counting field, an inner layer) extend it to reset those.
    """

    nfe_forward: int = 0
    nfe_backward: int | None = None

    def reset_nfe(self) -> None:
        self.nfe_forward = 0
        if "nfe_backward" in vars(self):  # an instance counter, not a property nor "uncounted"
            self.nfe_backward = 0

    def nfe_counts(self) -> tuple[int, int | None]:
        """``(nfe_forward, nfe_backward)`` since the last reset (``None``: not counted)."""
        return self.nfe_forward, self.nfe_backward


__all__ = ["CountsNFE"]

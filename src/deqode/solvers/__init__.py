"""Numerics: fixed-point solvers and homotopy continuation (no nn.Module models)."""

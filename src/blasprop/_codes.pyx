"""Activation, loss and solver codes of the C kernels, as Python enums.

Everything is declared in _codes.pxd, from csrc/bp_kernels.h: this module
only makes the ``cpdef enum`` classes (``bp_activation``, ``bp_loss``,
``bp_solver``) importable from Python.
"""

# The codes of activations, losses and solvers, declared once in
# csrc/bp_kernels.h. ``cpdef`` makes each enum a Python class too (an
# IntEnum of _codes), from which _activations.py and _optimizer.py derive
# their maps of names; Cython modules cimport the members.

cdef extern from "bp_kernels.h":
    cpdef enum bp_activation:
        BP_IDENTITY
        BP_LOGISTIC
        BP_TANH
        BP_RELU
        BP_LEAKY_RELU
        BP_ELU
        BP_GELU
        BP_SILU
        BP_SOFTPLUS
        BP_SOFTMAX
        BP_EXP

    cpdef enum bp_loss:
        BP_SQUARED_ERROR
        BP_LOG_LOSS
        BP_BINARY_LOG_LOSS
        BP_POISSON
        BP_HUBER
        BP_ABSOLUTE_ERROR

    cpdef enum bp_solver:
        BP_SGD
        BP_ADAM
        BP_ADAMW

"""The stochastic solvers' state across epochs and partial_fit calls, and
their learning-rate schedules.

The solver codes are defined once, by ``enum bp_solver`` in
``csrc/bp_kernels.h``; the names here come from its members.
"""

import numpy as np

from ._codes import bp_solver

# solver name -> code of the compiled epoch ("sgd", "adam", "adamw")
SOLVER_CODES = {member.name.removeprefix("BP_").lower(): int(member) for member in bp_solver}
STOCHASTIC_SOLVERS = tuple(SOLVER_CODES)
SOLVERS = ("lbfgs",) + STOCHASTIC_SOLVERS


class Optimizer:
    """State of a stochastic solver that lives across epochs and partial_fit
    calls (learning rate, velocities or moments, Adam's step count)."""

    def __init__(self, solver, n_params, dtype, learning_rate_init, lr_schedule,
                 power_t):
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule if solver == "sgd" else "constant"
        self.power_t = power_t
        self.t = 0
        self.state1 = np.zeros(n_params, dtype=dtype)
        self.state2 = np.zeros(n_params if solver != "sgd" else 1, dtype=dtype)

    @property
    def code(self):
        """The solver's code in the compiled core (derived, so that the
        state pickled by older versions, which lacks it, still works)."""
        return SOLVER_CODES[self.solver]

    def fits(self, solver, n_params, dtype):
        """Whether training can continue from this state."""
        return (self.solver == solver and self.state1.shape[0] == n_params
                and self.state1.dtype == dtype)

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = (
                float(self.learning_rate_init) / (time_step + 1) ** self.power_t
            )

    def trigger_stopping(self, msg, reporter):
        """Whether to stop; the 'adaptive' schedule first divides the
        learning rate by 5 until it is below 1e-6."""
        if self.lr_schedule != "adaptive":
            if reporter:
                reporter.message(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if reporter:
                reporter.message(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if reporter:
            reporter.message(f"{msg} Setting learning rate to {self.learning_rate:f}")
        return False

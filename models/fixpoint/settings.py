"""How an equilibrium is found and differentiated, as plain settings: importable without torch, so a command's
options and their defaults can be listed (``--help``) before the solvers themselves are loaded.

:mod:`models.fixpoint.core` maps each name in :data:`SOLVER_NAMES` to its solver, and
:mod:`models.fixpoint.backward` implements each of :data:`BACKWARD_MODES`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from inr_core.errors import check, check_positive

SOLVER_NAMES = ("fixed-point", "anderson", "broyden")
BACKWARD_MODES = ("neumann", "exact")
# The most f evaluations one solve (or truncated Neumann series) may be asked for: far past any that converges,
# and small enough that a mistyped count is refused rather than running for days.
MAX_ITERATIONS = 100_000

# Width-hidden tensors per sample a solver keeps alive (iterates, f values, history): for sizing batches.
ANDERSON_MEMORY = 5
BROYDEN_MEMORY = 30
STATE_TENSORS = {"fixed-point": 3, "anderson": 2 * ANDERSON_MEMORY + 3, "broyden": 2 * BROYDEN_MEMORY + 4}


@dataclass(frozen=True)
class SolverSettings:
    """How an equilibrium is found and differentiated: the forward solver and its stopping rule, the backward.

    ``tol`` is a relative residual ``||f(z) - z|| / ||f(z)||`` per sample. ``backward`` is ``neumann`` (the
    truncated series of order ``neumann_steps``: 0 is the Jacobian-free gradient, 1 the implicit-layer paper's
    default) or ``exact`` (the adjoint solved to ``backward_tol`` within ``backward_max_iter`` products).
    """

    solver: str = "fixed-point"
    tol: float = 1e-3
    max_iter: int = 100
    backward: str = "neumann"
    neumann_steps: int = 1
    backward_tol: float = 1e-6
    backward_max_iter: int = 200

    def validate(self) -> None:
        """Raise :class:`inr_core.errors.InvalidSetting` naming the first field no solve can use."""
        check(self.solver in SOLVER_NAMES, "solver",
              f"must be one of: {', '.join(SOLVER_NAMES)}; got {self.solver!r}")
        check_positive(self.tol, "tol")
        for name in ("max_iter", "neumann_steps", "backward_max_iter"):  # counts of f evaluations per solve
            value = getattr(self, name)
            low = 0 if name == "neumann_steps" else 1
            check(low <= value <= MAX_ITERATIONS, name, f"must be between {low} and {MAX_ITERATIONS:,}, got {value}")
        check(self.backward in BACKWARD_MODES, "backward",
              f"must be one of: {', '.join(BACKWARD_MODES)}; got {self.backward!r}")
        check_positive(self.backward_tol, "backward_tol")

    def state_tensors(self) -> int:
        """Width-sized tensors per sample the forward solver keeps alive (for memory planning)."""
        return STATE_TENSORS[self.solver]

    def to_dict(self) -> dict:
        return asdict(self)

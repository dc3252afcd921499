"""Hand a Plan to the runtime chosen for it: the one step launch and the exec fast path share
(`entry` replays a recorded exec through it, so it imports a runtime only when it runs one)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the exec path's rule)
if TYPE_CHECKING:
    from condatainer.run.plan import Plan


def execute(plan: Plan, binary: str | None) -> int:
    """Run `plan` attached to the terminal: with the builtin runtime when `binary` is None
    (its exit status), else by becoming `binary exec ...` (Apptainer's status is ours)."""
    if binary is None:
        from condatainer.run.runtime import builtin

        return builtin.execute(plan)
    from condatainer.run.runtime import apptainer

    apptainer.execute(plan, binary)

"""The runtime's exception for a run that cannot start or cannot go on (like every exception
flowspec raises on purpose, a :class:`flowspec.errors.FlowError`)."""

from __future__ import annotations

from flowspec.errors import FlowError


class RunError(FlowError):
    """A training, evaluation or sampling run failed for a reason the user can fix.

    Raised before any training step for a bad recipe, data that does not fit the spec, or a
    task the spec cannot do; during training for a non-finite loss (naming the first layer
    whose output went non-finite) or a checkpoint that cannot be written. The CLI prints the
    message and exits with status 1, without a traceback.
    """

"""Learning-rate schedules: the learning rate of each iteration as a pure function of its number.

Being a function of the iteration alone, a schedule needs no state in the checkpoint,
and a resumed run continues it exactly. Every schedule may start with a linear warmup.

- ``constant``: ``learning_rate`` throughout.
- ``cosine``: from ``learning_rate`` down to ``min_learning_rate`` along half a cosine,
  reaching it at iteration ``iterations``.
- ``step``: ``learning_rate`` multiplied by ``lr_step_factor`` every ``lr_step_every``
  iterations.
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine", "step")


def learning_rate_at(
    iteration: int,
    *,
    schedule: str,
    learning_rate: float,
    iterations: int,
    min_learning_rate: float = 0.0,
    warmup_iterations: int = 0,
    step_every: int = 0,
    step_factor: float = 0.1,
) -> float:
    """Return the learning rate of the 1-based ``iteration`` of a run of ``iterations``.

    During the first ``warmup_iterations`` the rate rises linearly from
    ``learning_rate / warmup_iterations`` to ``learning_rate``; the schedule counts
    from the end of the warmup. Past ``iterations`` (a resume that raised the total
    keeps the schedule of the new total) the cosine schedule stays at its minimum.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"learning-rate schedule {schedule!r} is unknown: use one of {', '.join(LR_SCHEDULES)}")
    if warmup_iterations > 0 and iteration <= warmup_iterations:
        return learning_rate * iteration / warmup_iterations
    after_warmup = iteration - warmup_iterations
    if schedule == "constant":
        return learning_rate
    if schedule == "step":
        return learning_rate * step_factor ** ((after_warmup - 1) // step_every)
    # The first iteration after the warmup gets learning_rate, iteration `iterations` the minimum.
    length = iterations - warmup_iterations
    progress = min((after_warmup - 1) / max(length - 1, 1), 1.0)
    return min_learning_rate + 0.5 * (learning_rate - min_learning_rate) * (1.0 + math.cos(math.pi * progress))

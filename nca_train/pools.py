"""Sample pools: per-sample images and states kept across mini-unrolls, with random resets.

Each of the ``size`` slots contains one training sample: an image, its label and the
state that the automaton has grown on it. Before every mini-unroll the pool draws, for
each slot independently, whether to replace the image (probability ``q_i``) and whether
to replace the state with fresh noise (probability ``q_s``). That gives four cases:

- new image + new state: an ordinary fresh rollout;
- kept image + kept state: the rollout continues, so the model learns to run past T;
- new image on a kept state: the model learns to re-segment from a converged state;
- kept image + new state: a fresh start on an image already in the pool.

The reset probabilities follow from target survival fractions. A sample reaches age T
after n = T / K mini-unrolls and survives each with probability 1 - q, so a fraction
p = (1 - q) ** n survives to age T, and q = 1 - p ** (K / T)
(:func:`nca_train.config.survival_to_reset_probability`).

The ages count update steps. ``state_age`` is the steps since the slot's state was
reset and ``image_age`` the steps since its image was replaced. The loss uses
:meth:`SamplePool.pair_age`, the smaller of the two, because a kept state that
has just been given a new image needs as many steps to settle on it as a fresh one.
"""

from __future__ import annotations

import numpy as np

CASES = ("new_image_new_state", "kept_image_kept_state", "new_image_kept_state", "kept_image_new_state")


class SamplePool:
    """Bookkeeping of which slots to reset and how old each slot's image and state are.

    The pool keeps plain arrays only: ``state_age`` and ``image_age`` (int64, one per
    slot) and ``filled`` (False until the first draw). The trainer keeps the images,
    labels and states themselves, indexed by slot.

    Parameters
    ----------
    size
        Number of slots (the batch size).
    image_reset_probability, state_reset_probability
        ``q_i`` and ``q_s``, the chance that a slot's image or state is replaced
        before a mini-unroll.
    """

    def __init__(self, size: int, image_reset_probability: float, state_reset_probability: float):
        if size < 1:
            raise ValueError(f"pool size {size} is invalid: expected at least 1 slot")
        for name, q in (("image_reset_probability", image_reset_probability),
                        ("state_reset_probability", state_reset_probability)):
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"{name}={q} is invalid: expected a probability in [0, 1]")
        self.size = size
        self.image_reset_probability = float(image_reset_probability)
        self.state_reset_probability = float(state_reset_probability)
        self.state_age = np.zeros(size, dtype=np.int64)
        self.image_age = np.zeros(size, dtype=np.int64)
        self.filled = False

    def draw_resets(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw which slots get a new image and which a new state, and reset their ages.

        The first draw resets every slot, because the pool starts empty.

        Returns
        -------
        new_image, new_state
            Boolean arrays of shape ``(size,)``.
        """
        # Both draws happen every time, so the generator advances the same way whatever the outcome.
        new_image = rng.random(self.size) < self.image_reset_probability
        new_state = rng.random(self.size) < self.state_reset_probability
        if not self.filled:
            new_image[:] = True
            new_state[:] = True
            self.filled = True
        self.image_age[new_image] = 0
        self.state_age[new_state] = 0
        return new_image, new_state

    def advance(self, steps: int) -> None:
        """Age every slot by ``steps`` update steps (after a mini-unroll)."""
        self.image_age += steps
        self.state_age += steps

    def pair_age(self) -> np.ndarray:
        """Return the steps since either the image or the state of each slot was last replaced."""
        return np.minimum(self.image_age, self.state_age)

    def loss_mask(self, steps: int, min_age: float) -> np.ndarray:
        """Return a ``(steps, size)`` boolean array: True where step k+1 of the next unroll is old enough for the loss."""
        ages = self.pair_age()[None, :] + np.arange(1, steps + 1)[:, None]
        return ages >= min_age

    @staticmethod
    def count_cases(new_image: np.ndarray, new_state: np.ndarray) -> dict[str, int]:
        """Count the slots in each of the four reset cases, keyed by :data:`CASES`."""
        return {
            "new_image_new_state": int(np.sum(new_image & new_state)),
            "kept_image_kept_state": int(np.sum(~new_image & ~new_state)),
            "new_image_kept_state": int(np.sum(new_image & ~new_state)),
            "kept_image_new_state": int(np.sum(~new_image & new_state)),
        }

    def state_dict(self) -> dict:
        return {
            "state_age": self.state_age.copy(),
            "image_age": self.image_age.copy(),
            "filled": self.filled,
        }

    def load_state_dict(self, data: dict) -> None:
        state_age = np.asarray(data["state_age"], dtype=np.int64)
        if state_age.shape != (self.size,):
            raise ValueError(
                f"the saved pool has {state_age.shape[0]} slots but this run uses {self.size}; "
                "resume with the batch size the run started with"
            )
        self.state_age = state_age.copy()
        self.image_age = np.asarray(data["image_age"], dtype=np.int64).copy()
        self.filled = bool(data["filled"])

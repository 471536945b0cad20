"""SamplePool: reset draws, the four reset cases, ages and the loss mask."""

from __future__ import annotations

import numpy as np
import pytest

from nca_train.config import survival_to_reset_probability
from nca_train.pools import CASES, SamplePool


def test_reset_probability_derivation():
    q = survival_to_reset_probability(0.5, unroll_steps=10, target_steps=40)
    assert q == pytest.approx(1 - 0.5 ** 0.25)
    # Surviving T / K = 4 mini-unrolls leaves the requested fraction.
    assert (1 - q) ** 4 == pytest.approx(0.5)
    assert survival_to_reset_probability(1.0, 10, 40) == 0.0
    assert survival_to_reset_probability(0.0, 10, 40) == 1.0


def test_first_draw_resets_every_slot():
    pool = SamplePool(5, 0.0, 0.0)
    new_image, new_state = pool.draw_resets(np.random.default_rng(0))
    assert new_image.all()
    assert new_state.all()
    assert pool.filled
    new_image, new_state = pool.draw_resets(np.random.default_rng(0))
    assert not new_image.any()
    assert not new_state.any()


def test_reset_fractions_converge():
    rng = np.random.default_rng(1)
    pool = SamplePool(64, 0.2, 0.35)
    pool.draw_resets(rng)
    image_resets = state_resets = 0
    draws = 500
    for _ in range(draws):
        new_image, new_state = pool.draw_resets(rng)
        image_resets += new_image.sum()
        state_resets += new_state.sum()
    assert image_resets / (64 * draws) == pytest.approx(0.2, abs=0.01)
    assert state_resets / (64 * draws) == pytest.approx(0.35, abs=0.01)


def test_survival_to_target_age_matches_requested_fraction():
    rng = np.random.default_rng(2)
    K, T, p = 10, 40, 0.3
    q = survival_to_reset_probability(p, K, T)
    pool = SamplePool(20_000, 0.0, q)
    pool.draw_resets(rng)
    for _ in range(T // K):
        pool.advance(K)
        pool.draw_resets(rng)
    # Slots never reset in T / K draws have reached age T.
    assert np.mean(pool.state_age >= T) == pytest.approx(p, abs=0.015)


def test_ages_reset_and_advance():
    rng = np.random.default_rng(3)
    pool = SamplePool(200, 0.3, 0.4)
    pool.draw_resets(rng)
    assert (pool.state_age == 0).all()
    pool.advance(10)
    assert (pool.state_age == 10).all()
    assert (pool.image_age == 10).all()
    before_state, before_image = pool.state_age.copy(), pool.image_age.copy()
    new_image, new_state = pool.draw_resets(rng)
    assert (pool.state_age[new_state] == 0).all()
    assert (pool.state_age[~new_state] == before_state[~new_state]).all()
    assert (pool.image_age[new_image] == 0).all()
    assert (pool.image_age[~new_image] == before_image[~new_image]).all()
    pool.advance(10)
    assert (pool.pair_age() == np.minimum(pool.image_age, pool.state_age)).all()
    assert set(np.unique(pool.pair_age())) <= {10, 20}


def test_all_four_cases_occur():
    rng = np.random.default_rng(4)
    pool = SamplePool(32, 0.5, 0.5)
    first = SamplePool.count_cases(*pool.draw_resets(rng))
    assert first == {"new_image_new_state": 32, "kept_image_kept_state": 0,
                     "new_image_kept_state": 0, "kept_image_new_state": 0}
    counts = dict.fromkeys(CASES, 0)
    for _ in range(20):
        for case, count in SamplePool.count_cases(*pool.draw_resets(rng)).items():
            counts[case] += count
    assert sum(counts.values()) == 20 * 32
    for case in CASES:
        assert counts[case] > 0, case


def test_loss_mask_uses_pair_age():
    pool = SamplePool(3, 0.0, 0.0)
    pool.draw_resets(np.random.default_rng(0))
    pool.state_age[:] = [0, 10, 30]
    pool.image_age[:] = [0, 30, 5]
    mask = pool.loss_mask(steps=10, min_age=40 / 3)
    assert mask.shape == (10, 3)
    # Slot 0 reaches age 10 at most: never in the loss.
    assert not mask[:, 0].any()
    # Slot 1 is at age 10 + k: ages 14..20 count, so steps 4..10.
    assert mask[:, 1].tolist() == [False] * 3 + [True] * 7
    # Slot 2 is limited by its new image (age 5): ages 14, 15 count.
    assert mask[:, 2].tolist() == [False] * 8 + [True] * 2


def test_state_dict_round_trip_and_size_check():
    rng = np.random.default_rng(5)
    pool = SamplePool(4, 0.5, 0.5)
    pool.draw_resets(rng)
    pool.advance(10)
    pool.draw_resets(rng)
    copy = SamplePool(4, 0.5, 0.5)
    copy.load_state_dict(pool.state_dict())
    assert (copy.state_age == pool.state_age).all()
    assert (copy.image_age == pool.image_age).all()
    assert copy.filled
    with pytest.raises(ValueError, match="batch size"):
        SamplePool(5, 0.5, 0.5).load_state_dict(pool.state_dict())


def test_invalid_probability_rejected():
    with pytest.raises(ValueError, match="image_reset_probability=1.5"):
        SamplePool(4, 1.5, 0.1)

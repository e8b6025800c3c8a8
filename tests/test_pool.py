"""The history pool: fills, then swaps; its state round-trips exactly."""

from __future__ import annotations

import torch

from aggan.pool import HistoryPool


def _batch(value: float) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((1, 3, 2, 2), value), torch.full((1, 1, 2, 2), value)


def test_pool_returns_new_images_while_filling_then_mixes() -> None:
    pool = HistoryPool(3, seed=0)
    for value in range(3):
        images, masks = pool.query(*_batch(value))
        assert images.eq(value).all() and masks.eq(value).all()
    returned = {float(pool.query(*_batch(100 + i))[0][0, 0, 0, 0]) for i in range(50)}
    assert returned & {0.0, 1.0, 2.0} or any(v < 100 for v in returned)
    assert any(v >= 100 for v in returned)


def _stored(pool: HistoryPool) -> list[float]:
    return [float(image[0, 0, 0]) for image in pool.images]


def test_full_pool_swaps_half_the_time_and_keeps_the_new_image() -> None:
    """Once full, each query either returns the new image and leaves the pool as it was, or
    returns a stored image (with its mask) and stores the new one in its place; the swap
    happens with probability 1/2 (CycleGAN's pool)."""
    pool = HistoryPool(4, seed=7)
    for value in range(4):
        pool.query(*_batch(float(value)))
    swaps, queries = 0, 2000
    for i in range(queries):
        new = 100.0 + i
        before = _stored(pool)
        image, mask = pool.query(*_batch(new))
        returned, after = float(image[0, 0, 0, 0]), _stored(pool)
        assert torch.equal(image[:, :1], mask)
        if returned == new:
            assert after == before
        else:
            swaps += 1
            assert returned in before and returned not in after
            assert [b if a == new else a for a, b in zip(after, before, strict=True)] == before
            assert after.count(new) == 1
    assert 0.47 < swaps / queries < 0.53
def test_pool_images_keep_their_masks() -> None:
    pool = HistoryPool(2, seed=1)
    for i in range(30):
        images, masks = pool.query(*_batch(float(i)))
        assert torch.equal(images[:, :1], masks)


def test_zero_capacity_passes_through() -> None:
    images, masks = HistoryPool(0, seed=0).query(*_batch(7.0))
    assert images.eq(7).all() and masks.eq(7).all()


def test_state_dict_round_trip_continues_identically() -> None:
    pool = HistoryPool(4, seed=3)
    for i in range(10):
        pool.query(*_batch(float(i)))
    restored = HistoryPool(4, seed=99)
    restored.load_state_dict(pool.state_dict(), torch.device("cpu"))
    for i in range(20):
        expected, actual = pool.query(*_batch(float(i))), restored.query(*_batch(float(i)))
        assert torch.equal(expected[0], actual[0])


def test_empty_pool_round_trips() -> None:
    """A checkpoint saved before the first fake (or with pool_size 0) restores an empty pool."""
    restored = HistoryPool(4, seed=1)
    restored.images, restored.masks = [torch.zeros(3, 2, 2)], [torch.zeros(1, 2, 2)]
    restored.load_state_dict(HistoryPool(4, seed=2).state_dict(), torch.device("cpu"))
    assert restored.images == [] and restored.masks == []

"""Fresh noise per epoch (SPEC §8.8): every draw is a function of (seed, epoch, k, purpose), and
epoch 0 is the seed's own draws, so pinned outputs never change."""

from __future__ import annotations

import numpy as np
import pytest
import ul2
from scipy import stats as scipy_stats

S = ul2.Sentinels.t5(32100, count=200)
ROWS = np.random.default_rng(0).integers(2, 31000, size=(64, 400), dtype=np.int32)
TOKENS = np.random.default_rng(1).integers(2, 31000, size=60_000, dtype=np.int32)
KEYS = np.arange(64)


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def collator(**kw) -> ul2.Collator:
    return ul2.Collator(ul2.presets.ul2(), sentinels=S, inputs_length=512, seed=7, **kw)


def dataset(**kw) -> ul2.DenoisingDataset:
    return ul2.DenoisingDataset(TOKENS, ul2.presets.ul2(), sentinels=S, inputs_length=512, seed=7, **kw)


def test_epoch_0_is_the_seed_alone():
    assert same(collator(epoch=0)(ROWS, keys=KEYS), collator()(ROWS, keys=KEYS))
    a, b = dataset(epoch=0), dataset()
    assert len(a) == len(b) and same(a.batch(np.arange(len(a))), b.batch(np.arange(len(b))))


def test_each_epoch_draws_fresh_noise_and_repeats_itself():
    outs = [collator(epoch=e)(ROWS, keys=KEYS)["input_ids"] for e in range(4)]
    for e in range(4):
        np.testing.assert_array_equal(outs[e], collator(epoch=e)(ROWS, keys=KEYS)["input_ids"])
        for f in range(e):
            same_rows = sum(np.array_equal(x, y) for x, y in zip(outs[e], outs[f], strict=True))
            assert same_rows <= 2, (e, f, same_rows)  # two epochs agree on a row by chance only


def test_set_epoch_is_the_epoch_argument():
    c = collator()
    c(ROWS[:4])
    c.set_epoch(3)
    assert c.epoch == 3 and c.next_key == 4 and c.stats["rows"] == 4
    assert same(c(ROWS, keys=KEYS), collator(epoch=3)(ROWS, keys=KEYS))
    assert c.stats["rows"] == 4 + 64
    ds = dataset()
    ds.set_epoch(2)
    fresh = dataset(epoch=2)
    assert ds.epoch == 2 and len(ds) == len(fresh)
    assert same(ds.batch(np.arange(len(ds))), fresh.batch(np.arange(len(fresh))))
    assert [ds.span(k) for k in range(len(ds))] == [fresh.span(k) for k in range(len(fresh))]


def test_a_dataset_epoch_redraws_the_denoisers_and_keeps_the_stream_whole():
    a, b = dataset(epoch=0), dataset(epoch=1)
    assert [a.denoiser(k) for k in range(50)] != [b.denoiser(k) for k in range(50)]
    for ds in (a, b):  # nothing used twice, nothing lost
        assert ds.span(0)[0] == 0 and ds.span(ds.num_samples - 1)[1] + ds.tail == ds.stream_length


@pytest.mark.parametrize("epoch", [1, 5])
def test_denoiser_frequencies_keep_the_rates_in_any_epoch(epoch):
    mixture = ul2.presets.ul2()
    stream = np.full(7000 * 720, 5, np.int32)
    ds = ul2.DenoisingDataset(stream, mixture, sentinels=S, inputs_length=512, seed=7, epoch=epoch)
    counts = np.bincount([ds.denoiser(k) for k in range(ds.num_samples)], minlength=len(mixture))
    expected = np.full(len(mixture), ds.num_samples / len(mixture))
    assert scipy_stats.chisquare(counts, expected).pvalue > 1e-3, counts


def test_epoch_is_checked():
    with pytest.raises(ValueError, match="epoch=-1"):
        collator(epoch=-1)
    with pytest.raises(TypeError, match="epoch=None"):
        collator(epoch=None)

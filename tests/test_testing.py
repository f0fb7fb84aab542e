"""ul2.testing: its strategies drive ul2's own property tests, and its checkers catch broken
examples (they can fail)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import ul2
from hypothesis import given
from hypothesis import strategies as st
from ul2 import testing

SENTINELS = ul2.Sentinels.t5(1000, 100)


@given(testing.setups())
def test_any_setup_tiles_the_stream_and_round_trips(setup: testing.Setup) -> None:
    ds = setup.dataset()
    testing.check_accounting(ds)
    testing.check_batch(ds, range(min(6, ds.num_samples)))


@given(testing.setups(decoder_only=False, max_denoisers=2), st.integers(0, 10))
def test_separator_and_last_samples(setup: testing.Setup, extra: int) -> None:
    ds = setup.dataset(separator_id=1) if setup.documents == "concat" else setup.dataset()
    testing.check_accounting(ds)
    n = ds.num_samples
    testing.check_batch(ds, sorted({max(0, n - 1 - extra), max(0, n - 1)} & set(range(n))))


@given(testing.setups(max_length=128), st.booleans())
def test_packed_rows_hold_every_sample_once(setup: testing.Setup, bidirectional: bool) -> None:
    ds = setup.dataset(pack=True, bidirectional_mask=bidirectional)
    testing.check_accounting(ds)


@given(
    testing.span_corruptions(num_spans=False, prompt=False),
    testing.token_streams(min_length=2, max_length=300, high=600),
    st.integers(0, 1000),
)
def test_reconstruct_inverts_apply_mask(d: ul2.SpanCorruption, tokens: np.ndarray, key: int) -> None:
    try:
        mask = ul2.noise_mask(
            len(tokens), d.noise_density, d.mean_span_length, random_roll=d.random_roll, key=key
        )
    except ValueError:  # more spans than non-noise tokens: rejected by design
        return
    sentinels = ul2.Sentinels.t5(1000, 100, on_overflow="t5")
    inputs, targets = ul2.apply_mask(tokens, mask, sentinels)
    universe = 999 - np.arange(len(tokens) + 1)
    np.testing.assert_array_equal(testing.reconstruct(inputs, targets, universe.tolist()), tokens)


def example(d: ul2.Denoiser, length: int = 60, key: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = np.random.default_rng(key).integers(3, 900, length).astype(np.int32)
    c = ul2.Collator(d, sentinels=SENTINELS, inputs_length=length + 10, targets_length=length + 10)
    out = c(raw[None, :], keys=[key])
    n_in, n_t = int(out["attention_mask"][0].sum()), int(out["decoder_attention_mask"][0].sum())
    return raw, out["input_ids"][0, :n_in], out["labels"][0, :n_t]


@pytest.mark.parametrize(
    "d",
    [
        ul2.SpanCorruption(3, 0.15, prefix=(5, 6)),
        ul2.SpanCorruption(4, 0.4, random_roll=True),
        ul2.PrefixLM(0.25, prefix=(7,)),
        ul2.CausalLM(prefix=(8, 9)),
    ],
)
def test_check_example_accepts_real_examples(d: ul2.Denoiser) -> None:
    raw, inputs, targets = example(d)
    testing.check_example(raw, inputs, targets, d, sentinels=SENTINELS)


def test_check_example_catches_broken_examples() -> None:
    d = ul2.SpanCorruption(3, 0.15, prefix=(5, 6))
    raw, inputs, targets = example(d)

    def fails(inp: np.ndarray, tgt: np.ndarray, match: str, den: ul2.Denoiser = d) -> None:
        with pytest.raises(AssertionError, match=match):
            testing.check_example(raw, inp, tgt, den, sentinels=SENTINELS)

    fails(inputs[1:], targets, "prompt")
    fails(inputs[:-1], targets, "EOS")
    bad = targets.copy()
    bad[1] = bad[1] + 1  # a noise token changed
    fails(inputs, bad, "round trip")
    swapped = inputs.copy()
    pos = np.flatnonzero(np.isin(swapped, SENTINELS.ids))
    swapped[pos[[0, 1]]] = swapped[pos[[1, 0]]]
    fails(swapped, targets, "out of order")
    fewer = np.delete(targets, [1])  # one noise token lost: noise count no longer exact
    fails(inputs, fewer, "round trip|noise tokens")
    with pytest.raises(AssertionError, match="spans"):
        testing.check_example(raw, inputs, targets, d, sentinels=SENTINELS, spans=99)
    p = ul2.PrefixLM(0.25)
    raw_p, inp_p, tgt_p = example(p)
    lo, _ = ul2.stats.prefix_bounds(len(raw_p), 0.25)
    # Move the split below T5's lower bound: still a round trip, but outside the law's support.
    k = len(inp_p) - 1
    moved_in = np.concatenate([inp_p[: lo - 1], inp_p[k:]])
    moved_t = np.concatenate([inp_p[lo - 1 : k], tgt_p])
    with pytest.raises(AssertionError, match="outside"):
        testing.check_example(raw_p, moved_in, moved_t, p, sentinels=SENTINELS)


def test_check_accounting_catches_gaps_and_wrong_tails() -> None:
    def fake(spans: list[tuple[int, int]], tail: int, length: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            num_samples=len(spans),
            span=lambda k: spans[k],
            tail=tail,
            stream_length=length,
            documents="concat",
            pack=False,
        )

    testing.check_accounting(fake([(0, 5), (5, 9)], 1, 10))  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="starts at 6"):
        testing.check_accounting(fake([(0, 5), (6, 9)], 1, 10))  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="tail"):
        testing.check_accounting(fake([(0, 5), (5, 9)], 0, 10))  # type: ignore[arg-type]


def test_check_batch_catches_a_wrong_stream() -> None:
    tokens = np.random.default_rng(0).integers(3, 900, 2000).astype(np.int32)
    ds = ul2.DenoisingDataset(tokens, ul2.presets.t5(), sentinels=SENTINELS, inputs_length=64)
    testing.check_batch(ds, range(5))
    shifted = np.concatenate([tokens[1:], tokens[:1]])
    with pytest.raises(AssertionError, match="example 0"):
        testing.check_batch(ds, range(5), stream=shifted)


@given(testing.mixtures(), testing.budgets())
def test_strategies_draw_valid_values(mixture: ul2.Mixture, budget: dict[str, int | None]) -> None:
    assert isinstance(mixture, ul2.Mixture) and 1 <= len(mixture) <= 4
    assert all(r > 0 for r in mixture.rates)
    assert set(budget) in ({"inputs_length", "targets_length"}, {"sequence_length"})
    assert ul2.Mixture.from_dict(mixture.to_dict()) == mixture


def test_denoisers_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="kinds"):
        testing.denoisers(kinds=("span", "bogus"))

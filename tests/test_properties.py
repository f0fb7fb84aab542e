"""Property tests of SPEC §8.1, §8.3, §8.4 and §8.5 (batching; thread counts and workers are in
test_robustness.py) at the Python boundary.

Lengths stay below ~2000 so each example is cheap; the "ci" profile runs 500 examples each.
"""

from __future__ import annotations

import numpy as np
import pytest
import ul2
from hypothesis import assume, given
from hypothesis import strategies as st
from ul2 import testing

U64 = st.integers(0, 2**64 - 1)
KEYS = st.integers(0, 2**63 - 1)
TOKEN_DTYPES = st.sampled_from([np.int32, np.int64, np.uint16, np.uint32])

# A vocabulary that fits uint16, with enough sentinels for every row below (<= 2000 tokens).
VOCAB = 65000
SENTINELS = ul2.Sentinels.t5(VOCAB, count=1100)
MAX_TOKEN = VOCAB - SENTINELS.count  # ordinary tokens are < MAX_TOKEN
SENTINEL_SET = frozenset(SENTINELS.ids.tolist())
EOS, PAD = 1, 0


def t5_counts(length: int, r: float, mu: float) -> tuple[int, int]:
    """Reference §2, computed independently: float32 products, ties-to-even, T5's clamps."""
    if r == 0.0 or length < 2:
        return 0, 0
    n_noise = int(np.round(np.float32(length) * np.float32(r)))
    n_noise = min(max(n_noise, 1), length - 1)
    return n_noise, max(1, int(np.round(np.float32(n_noise) / np.float32(mu))))


def feasible(length: int, r: float, mu: float) -> bool:
    """T5 can draw the mask: n parts of N noise and of L-N non-noise tokens."""
    n_noise, n_spans = t5_counts(length, r, mu)
    return n_spans == 0 or (n_spans <= n_noise and n_spans <= length - n_noise)


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of ``mask``: (starts, lengths, values)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.size == 0:
        return (np.zeros(0, np.int64),) * 2 + (np.zeros(0, bool),)  # type: ignore[return-value]
    starts = np.flatnonzero(np.concatenate([[True], mask[1:] != mask[:-1]]))
    lengths = np.diff(np.concatenate([starts, [mask.size]]))
    return starts, lengths, mask[starts]


def tokens_for(rng: np.random.Generator, length: int, dtype: type) -> np.ndarray:
    return rng.integers(2, MAX_TOKEN, size=length).astype(dtype)


# --- §8.1: counts, spans, alternation ----------------------------------------------------------

LENGTHS = st.integers(2, 2000)
DENSITIES = st.one_of(st.floats(0.001, 1.0), st.sampled_from([0.15, 0.25, 0.5]))
MEAN_SPANS = st.one_of(st.floats(1.0, 100.0), st.sampled_from([1.0, 2.0, 3.0, 8.0, 32.0, 64.0]))


@given(length=LENGTHS, r=DENSITIES, mu=MEAN_SPANS, seed=U64, key=U64)
def test_mask_structure(length: int, r: float, mu: float, seed: int, key: int) -> None:
    n_noise, n_spans = t5_counts(length, r, mu)
    if not feasible(length, r, mu):
        # SPEC §2: r > .5 with n > L - N is a ValueError (T5 crashes).
        with pytest.raises(ValueError, match="noise"):
            ul2.noise_mask(length, r, mu, seed=seed, key=key)
        return
    assert ul2.span_counts(length, r, mu) == (n_noise, n_spans)
    mask = ul2.noise_mask(length, r, mu, seed=seed, key=key)
    assert mask.dtype == np.bool_ and mask.shape == (length,)
    assert int(mask.sum()) == n_noise
    _, lengths, values = runs(mask)
    # Runs are non-empty and alternate by construction; there must be n of each kind, starting
    # clean and ending noisy.
    assert len(values) == 2 * n_spans
    assert not values[0] and values[-1]
    assert (lengths > 0).all()


@given(length=LENGTHS, r=DENSITIES, mu=MEAN_SPANS, num_spans=st.integers(1, 40), seed=U64, key=U64)
def test_mask_structure_with_num_spans(
    length: int, r: float, mu: float, num_spans: int, seed: int, key: int
) -> None:
    n_noise, _ = t5_counts(length, r, mu)
    assume(num_spans <= n_noise and num_spans <= length - n_noise)
    mask = ul2.noise_mask(length, r, mu, num_spans=num_spans, seed=seed, key=key)
    assert int(mask.sum()) == n_noise
    _, _, values = runs(mask)
    assert len(values) == 2 * num_spans and not values[0] and values[-1]


@given(length=LENGTHS, r=DENSITIES, mu=MEAN_SPANS, seed=U64, key=U64)
def test_mask_structure_with_roll(length: int, r: float, mu: float, seed: int, key: int) -> None:
    assume(feasible(length, r, mu))
    n_noise, n_spans = t5_counts(length, r, mu)
    mask = ul2.noise_mask(length, r, mu, random_roll=True, seed=seed, key=key)
    assert mask.shape == (length,)
    assert int(mask.sum()) == n_noise
    _, _, values = runs(mask)
    linear = int(values.sum())
    assert linear in (n_spans, n_spans + 1)
    # A run is split only by the wrap: then the mask starts and ends with noise.
    if linear == n_spans + 1:
        assert mask[0] and mask[-1]
    # Read cyclically, the rolled mask still has exactly n noise runs.
    cyclic = int(np.count_nonzero(mask & ~np.roll(mask, 1)))
    assert cyclic == n_spans
    # Rotating back to a clean-run start gives the unrolled structure.
    starts = np.flatnonzero(~mask & np.roll(mask, 1))
    unrolled = np.roll(mask, -int(starts[0]))
    assert not unrolled[0] and unrolled[-1]


# --- §8.3: round trip through apply_mask -------------------------------------------------------


@given(
    length=st.integers(0, 2000),
    r=st.floats(0.0, 0.5),
    mu=MEAN_SPANS,
    roll=st.booleans(),
    dtype=TOKEN_DTYPES,
    eos=st.sampled_from([None, EOS]),
    seed=U64,
    key=U64,
)
def test_apply_mask_round_trip(
    length: int, r: float, mu: float, roll: bool, dtype: type, eos: int | None, seed: int, key: int
) -> None:
    assume(feasible(length, r, mu))
    rng = np.random.default_rng(key % 2**32)
    tokens = tokens_for(rng, length, dtype)
    mask = ul2.noise_mask(length, r, mu, random_roll=roll, seed=seed, key=key)
    check_apply_mask(tokens, mask, eos)


@given(
    length=st.integers(0, 600),
    p=st.floats(0.0, 1.0),
    dtype=TOKEN_DTYPES,
    eos=st.sampled_from([None, EOS]),
    data_seed=st.integers(0, 2**32 - 1),
)
def test_apply_mask_round_trip_any_mask(
    length: int, p: float, dtype: type, eos: int | None, data_seed: int
) -> None:
    # Any mask at all: starting with noise, ending clean, all noise, no noise.
    rng = np.random.default_rng(data_seed)
    tokens = tokens_for(rng, length, dtype)
    mask = rng.random(length) < p
    check_apply_mask(tokens, mask, eos)


def check_apply_mask(tokens: np.ndarray, mask: np.ndarray, eos: int | None) -> None:
    inputs, targets = ul2.apply_mask(tokens, mask, SENTINELS, eos_id=eos)
    wide = tokens.dtype in (np.int64, np.uint32)
    assert inputs.dtype == targets.dtype == (np.int64 if wide else np.int32)
    ins, tgt = inputs.tolist(), targets.tolist()
    if eos is not None:
        assert ins[-1] == eos and tgt[-1] == eos
        ins, tgt = ins[:-1], tgt[:-1]
    length, n_noise = len(tokens), int(mask.sum())
    _, _, values = runs(mask)
    n_runs = int(values.sum())
    trailing = int(length > 0 and (n_runs == 0 or not mask[-1]))
    assert len(ins) == length - n_noise + n_runs
    assert len(tgt) == n_noise + n_runs + trailing
    # The k-th noise run gets sentinels.ids[k], in inputs and targets alike.
    ids = SENTINELS.ids[: n_runs + trailing].tolist()
    assert [t for t in ins if t in SENTINEL_SET] == ids[:n_runs]
    assert [t for t in tgt if t in SENTINEL_SET] == ids
    if length:
        assert tgt[0] == ids[0]
    assert testing.reconstruct(ins, tgt, ids).tolist() == tokens.tolist()


# --- §8.3 through the Collator ----------------------------------------------------------------


def strip_hf(out: dict[str, np.ndarray], i: int, prompt: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Row i of an hf batch without padding, prompt and EOS."""
    ids = out["input_ids"][i][out["attention_mask"][i] == 1].tolist()
    labels = out["labels"][i]
    tgt = labels[labels != -100].tolist()
    assert ids[: len(prompt)] == list(prompt)
    assert ids[-1] == EOS and tgt[-1] == EOS
    # Padding is only at the end.
    assert out["attention_mask"][i][: len(ids)].all() and (labels[len(tgt) :] == -100).all()
    return ids[len(prompt) : -1], tgt[:-1]


@given(
    inputs_length=st.integers(16, 600),
    r=st.floats(0.01, 0.5),
    mu=MEAN_SPANS,
    roll=st.booleans(),
    prompt=st.lists(st.integers(2, MAX_TOKEN - 1), max_size=3).map(tuple),
    dtype=TOKEN_DTYPES,
    fractions=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
    as_2d=st.booleans(),
    seed=U64,
    keys=st.lists(KEYS, min_size=6, max_size=6),
)
def test_collator_round_trip(
    inputs_length: int,
    r: float,
    mu: float,
    roll: bool,
    prompt: tuple[int, ...],
    dtype: type,
    fractions: list[float],
    as_2d: bool,
    seed: int,
    keys: list[int],
) -> None:
    denoiser = ul2.SpanCorruption(mu, r, prefix=prompt, random_roll=roll)
    raw = planned_raw(denoiser, inputs_length)
    lengths = [raw] * len(fractions) if as_2d else [round(f * raw) for f in fractions]
    assume(all(feasible(n, r, mu) for n in lengths))
    rng = np.random.default_rng(seed % 2**32)
    rows = [tokens_for(rng, n, dtype) for n in lengths]
    collator = ul2.Collator(denoiser, sentinels=SENTINELS, inputs_length=inputs_length, seed=seed)
    batch = np.stack(rows) if as_2d else rows
    out = collator(batch, keys=keys[: len(rows)])
    assert out["input_ids"].shape == (len(rows), inputs_length)
    for i, row in enumerate(rows):
        _, tgt = strip_hf(out, i, prompt)
        # The noise counts are T5's for the row's length; a roll adds at most one run.
        n_noise, n_spans = t5_counts(len(row), r, mu)
        assert sum(t not in SENTINEL_SET for t in tgt) == n_noise
        inputs = out["input_ids"][i][out["attention_mask"][i] == 1]
        targets = out["labels"][i][out["labels"][i] != -100]
        testing.check_example(row, inputs, targets, denoiser, sentinels=SENTINELS, eos_id=EOS, spans=n_spans)


def planned_raw(denoiser: ul2.SpanCorruption, inputs_length: int) -> int:
    try:
        (row,) = ul2.plan(denoiser, sentinels=SENTINELS, inputs_length=inputs_length)
    except ValueError as e:
        # Impossible combinations (n > L - N at r = .5 and small mu; a budget too small).
        assume("non-noise" not in str(e) and "too small" not in str(e))
        raise
    return row.raw_length


# --- §8.4: planned lengths == produced lengths --------------------------------------------------


@given(
    inputs_length=st.integers(8, 600),
    r=st.one_of(st.floats(0.01, 0.5), st.sampled_from([0.15, 0.5])),
    mu=MEAN_SPANS,
    prompt_length=st.integers(0, 3),
    seed=U64,
    key=KEYS,
)
def test_planned_lengths_are_produced(
    inputs_length: int, r: float, mu: float, prompt_length: int, seed: int, key: int
) -> None:
    prompt = tuple(range(2, 2 + prompt_length))
    denoiser = ul2.SpanCorruption(mu, r, prefix=prompt)
    raw = planned_raw(denoiser, inputs_length)
    (row,) = ul2.plan(denoiser, sentinels=SENTINELS, inputs_length=inputs_length)
    assert (row.raw_length, row.targets_length) == ul2.plan_span_corruption(
        inputs_length, r, mu, prompt_length=prompt_length
    )
    # The plan fills the budget exactly, except that at r = .5 targets may not exceed inputs,
    # which can leave the inputs one short (reference §3 quirk 4: 990 -> 511/511 at 512), and
    # that raw lengths T5's mask cannot draw are skipped (inputs grow by at most one a token,
    # so a short plan means the next raw length, which would fit, is not drawable).
    assert (
        row.inputs_length == inputs_length
        or (r == 0.5 and row.inputs_length == inputs_length - 1)
        or not feasible(raw + 1, r, mu)
    )
    collator = ul2.Collator(
        denoiser, sentinels=SENTINELS, inputs_length=inputs_length, seed=seed, long_rows="error"
    )
    assert collator.targets_length == row.targets_length
    tokens = tokens_for(np.random.default_rng(key % 2**32), raw, np.int32)
    out = collator(tokens[None, :], keys=[key])
    assert int(out["attention_mask"][0].sum()) == row.inputs_length
    assert int((out["labels"][0] != -100).sum()) == row.targets_length
    n_noise, n_spans = t5_counts(raw, r, mu)
    assert (row.spans, row.sentinels) == (n_spans, n_spans)
    assert row.inputs_length == prompt_length + raw - n_noise + n_spans + 1
    # One more raw token does not fit the budget.
    longer = tokens_for(np.random.default_rng(0), raw + 1, np.int32)
    with pytest.raises(ValueError, match=r"rows\[0\]"):
        collator(longer[None, :], keys=[key])


@given(
    inputs_length=st.integers(8, 600),
    r=st.one_of(st.floats(0.01, 0.5), st.sampled_from([0.15, 0.5])),
    mu=MEAN_SPANS,
    prompt_length=st.integers(0, 3),
    seed=U64,
    keys=st.lists(KEYS, min_size=8, max_size=8),
)
def test_planned_lengths_with_roll(
    inputs_length: int, r: float, mu: float, prompt_length: int, seed: int, keys: list[int]
) -> None:
    # With a roll the plan is the maximum. A run split by the wrap reaches it in both inputs
    # and targets; without a split the inputs have one sentinel less, and so do the targets
    # unless the rolled mask ends clean (then they get the trailing sentinel instead).
    denoiser = ul2.SpanCorruption(mu, r, prefix=tuple(range(2, 2 + prompt_length)), random_roll=True)
    raw = planned_raw(denoiser, inputs_length)
    (row,) = ul2.plan(denoiser, sentinels=SENTINELS, inputs_length=inputs_length)
    assert row.inputs_length <= inputs_length
    assert row.sentinels == row.spans + 1
    collator = ul2.Collator(denoiser, sentinels=SENTINELS, inputs_length=inputs_length, seed=seed)
    tokens = tokens_for(np.random.default_rng(seed % 2**32), raw, np.int32)
    out = collator(np.stack([tokens] * len(keys)), keys=keys)
    short_in = row.inputs_length - out["attention_mask"].sum(axis=1)
    short_tgt = row.targets_length - (out["labels"] != -100).sum(axis=1)
    assert set(short_in.tolist()) <= {0, 1} and set(short_tgt.tolist()) <= {0, 1}
    assert (short_tgt <= short_in).all()


@given(
    inputs_length=st.integers(8, 600),
    suffix_density=st.one_of(st.floats(0.0, 0.5), st.sampled_from([0.25, 0.5])),
    prompt_length=st.integers(0, 3),
    causal=st.booleans(),
    seed=U64,
    keys=st.lists(KEYS, min_size=8, max_size=8),
)
def test_planned_lengths_prefix_and_causal(
    inputs_length: int, suffix_density: float, prompt_length: int, causal: bool, seed: int, keys: list[int]
) -> None:
    prompt = tuple(range(2, 2 + prompt_length))
    denoiser = ul2.CausalLM(prefix=prompt) if causal else ul2.PrefixLM(suffix_density, prefix=prompt)
    (row,) = ul2.plan(denoiser, sentinels=SENTINELS, inputs_length=inputs_length)
    collator = ul2.Collator(denoiser, sentinels=SENTINELS, inputs_length=inputs_length, seed=seed)
    tokens = tokens_for(np.random.default_rng(seed % 2**32), row.raw_length, np.int32)
    out = collator(np.stack([tokens] * len(keys)), keys=keys)
    n_in = out["attention_mask"].sum(axis=1)
    n_tgt = (out["labels"] != -100).sum(axis=1)
    assert (n_in + n_tgt == prompt_length + row.raw_length + 2).all()  # nothing lost, 2 EOS
    assert (n_in <= row.inputs_length).all() and (n_tgt <= row.targets_length).all()
    assert row.inputs_length <= inputs_length
    if causal:
        assert (n_in == prompt_length + 1).all() and (n_tgt == row.raw_length + 1).all()
    else:
        # T5's prefix_lm at inputs_length: raw = inputs_length - prompt - 1 and the inputs use
        # at most raw - 1 tokens plus EOS.
        assert row.raw_length == inputs_length - prompt_length - 1
        assert row.inputs_length == inputs_length - 1
    for i in range(len(keys)):
        ins, tgt = strip_hf(out, i, prompt)
        assert ins + tgt == tokens.tolist()


def _noise(length: int, r: float) -> int:
    """T5's noise-token count at ``length`` (float32, ties to even, clamped)."""
    return min(max(int(np.round(np.float32(length) * np.float32(r))), 1), length - 1)


@given(
    inputs_length=st.integers(16, 600),
    r=st.floats(0.05, 0.5),
    mu=MEAN_SPANS,
    num_spans=st.integers(1, 5),
    seed=U64,
    key=KEYS,
)
def test_planned_lengths_with_num_spans(
    inputs_length: int, r: float, mu: float, num_spans: int, seed: int, key: int
) -> None:
    # SPEC §8.4 for every denoiser: SpanCorruption(num_spans=k) too.
    denoiser = ul2.SpanCorruption(mu, r, num_spans=num_spans)
    try:
        (row,) = ul2.plan(denoiser, sentinels=SENTINELS, inputs_length=inputs_length)
    except ValueError as e:
        # Only when even the shortest row with num_spans spans overflows the budget.
        shortest = next(n for n in range(2, 10_000) if min(_noise(n, r), n - _noise(n, r)) >= num_spans)
        assert shortest + num_spans + 1 > inputs_length, str(e)
        assert "inputs_length" in str(e)
        return
    assert row.spans == num_spans
    assert row.inputs_length == inputs_length or (r == 0.5 and row.inputs_length == inputs_length - 1)
    collator = ul2.Collator(denoiser, sentinels=SENTINELS, inputs_length=inputs_length, seed=seed)
    tokens = tokens_for(np.random.default_rng(key % 2**32), row.raw_length, np.int32)
    out = collator(tokens[None, :], keys=[key])
    assert int(out["attention_mask"][0].sum()) == row.inputs_length
    assert int((out["labels"][0] != -100).sum()) == row.targets_length


# --- §8.5: same (seed, key) -> same example ----------------------------------------------------

P = (5, 6)
MIXTURE = ul2.Mixture(
    [
        (ul2.SpanCorruption(3.0, 0.15, prefix=(3,)), 1.0),
        (ul2.SpanCorruption(8.0, 0.5, prefix=(4,)), 1.0),
        (ul2.SpanCorruption(3.0, 0.5, prefix=P, random_roll=True), 1.0),
        (ul2.SpanCorruption(64.0, 0.15), 1.0),
        (ul2.PrefixLM(0.5, prefix=(7,)), 1.0),
        (ul2.PrefixLM(0.25), 1.0),
        (ul2.CausalLM(prefix=(8,)), 0.5),
    ]
)
MIX_INPUTS = 96
MIX_RAW = min(r.raw_length for r in ul2.plan(MIXTURE, sentinels=SENTINELS, inputs_length=MIX_INPUTS))


def rows_strategy(max_rows: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, MIX_RAW), min_size=1, max_size=max_rows)


@given(
    lengths=rows_strategy(24),
    seed=U64,
    keys=st.lists(KEYS, min_size=24, max_size=24),
    groups=st.lists(st.integers(0, 3), min_size=24, max_size=24),
    order=st.randoms(use_true_random=False),
    fmt=st.sampled_from(["hf", "seqio"]),
)
def test_batch_composition_does_not_matter(
    lengths: list[int], seed: int, keys: list[int], groups: list[int], order, fmt: str
) -> None:
    rng = np.random.default_rng(seed % 2**32)
    rows = [tokens_for(rng, n, np.int32) for n in lengths]
    keys = keys[: len(rows)]
    full = ul2.Collator(MIXTURE, sentinels=SENTINELS, inputs_length=MIX_INPUTS, seed=seed, format=fmt)(
        rows, keys=keys
    )
    # Random sub-batches, each shuffled, through a fresh collator with the same seed.
    fresh = ul2.Collator(MIXTURE, sentinels=SENTINELS, inputs_length=MIX_INPUTS, seed=seed, format=fmt)
    for g in sorted(set(groups[: len(rows)])):
        idx = [i for i in range(len(rows)) if groups[i] == g]
        order.shuffle(idx)
        part = fresh([rows[i] for i in idx], keys=[keys[i] for i in idx])
        for name, arr in full.items():
            np.testing.assert_array_equal(part[name], arr[idx], err_msg=name)

"""The SPEC §7 primitives against the T5 / seqio test vectors quoted in the reference
(reference §2, §3, §4.1, §6.1 and §11), plus sentinel layout and overflow policies."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import ul2


def noise_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each maximal run of True in ``mask``."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def target_blocks(targets: np.ndarray, sentinel_ids: np.ndarray) -> list[tuple[int, list[int]]]:
    """Targets cut at sentinels: ``[(sentinel, tokens that follow it), ...]``. Fails if the
    targets do not start with a sentinel (T5's misaligned layout would)."""
    sset = set(sentinel_ids.tolist())
    blocks: list[tuple[int, list[int]]] = []
    for t in targets.tolist():
        if t in sset:
            blocks.append((t, []))
        else:
            assert blocks, f"targets {targets.tolist()} start with a raw token, not a sentinel"
            blocks[-1][1].append(t)
    return blocks


def assert_aligned(tokens, mask, inputs, targets, sentinels: ul2.Sentinels) -> None:
    """Reference §4.2: each target sentinel is followed by exactly the tokens it replaced in
    the inputs; the k-th noise run gets sentinels.ids[k] in both."""
    tokens = np.asarray(tokens)
    runs = noise_runs(mask)
    ids = sentinels.ids
    in_sentinels = [t for t in inputs.tolist() if t in set(ids.tolist())]
    assert in_sentinels == ids[: len(runs)].tolist()
    blocks = target_blocks(targets, ids)
    for k, (start, end) in enumerate(runs):
        assert blocks[k] == (int(ids[k]), tokens[start:end].tolist())
    # Anything after the last run's block is the single trailing sentinel, with no tokens.
    assert blocks[len(runs) :] in ([], [(int(ids[len(runs)]), [])])


# --- reference §4.1: the sentinel transforms on [10..15], mask TTFFTF, V=1000 -----------------

V = 1000
TOKENS = np.arange(10, 16, dtype=np.int32)
MASK_TTFFTF = np.array([True, True, False, False, True, False])


def test_t5_mask_application_vector() -> None:
    s = ul2.Sentinels.t5(V)
    inputs, targets = ul2.apply_mask(TOKENS, MASK_TTFFTF, s)
    # Inputs are exactly T5's noise_span_to_unique_sentinel output (T5-TEST).
    assert inputs.tolist() == [999, 12, 13, 998, 15]
    # T5's nonnoise_span_to_unique_sentinel gives targets [10, 11, 999, 14, 998]: the mask starts
    # with noise, so T5's targets begin with raw tokens and every sentinel is off by one (14
    # belongs to 998 in the inputs but follows 999 in T5's targets). ul2 keeps the layout
    # aligned; the mask ends clean, so the targets get one trailing sentinel (997).
    assert targets.tolist() == [999, 10, 11, 998, 14, 997]
    assert_aligned(TOKENS, MASK_TTFFTF, inputs, targets, s)
    assert target_blocks(targets, s.ids) == [(999, [10, 11]), (998, [14]), (997, [])]


def test_t5_mask_application_vector_with_eos() -> None:
    inputs, targets = ul2.apply_mask(TOKENS, MASK_TTFFTF, ul2.Sentinels.t5(V), eos_id=1)
    assert inputs.tolist() == [999, 12, 13, 998, 15, 1]
    assert targets.tolist() == [999, 10, 11, 998, 14, 997, 1]


def test_mask_starting_clean_is_exactly_t5() -> None:
    # For masks that start with non-noise ul2 equals T5 (reference §4.1 layout c1 S0 c2 S1 ...).
    mask = np.array([False, True, True, False, False, True])
    inputs, targets = ul2.apply_mask(TOKENS, mask, ul2.Sentinels.t5(V))
    assert inputs.tolist() == [10, 999, 13, 14, 998]
    assert targets.tolist() == [999, 11, 12, 998, 15]


# --- reference §4.1: T5-TEST test_denoise (V=26, r=.3) ----------------------------------------

DENOISE_TOKENS = [3, 2, 20, 4, 3, 2, 8, 13, 2, 3, 2, 23, 7, 19, 22, 3, 2, 7, 2]


def test_t5_denoise_vector() -> None:
    # Vocabulary of 26 ids; only two sentinels (25, 24) so that 23 stays an ordinary token.
    s = ul2.Sentinels.t5(26, count=2)
    mask = np.zeros(len(DENOISE_TOKENS), dtype=bool)
    mask[8] = True  # the lone "2"
    mask[14:] = True  # the last 5 tokens form a noise span
    # The mask has the counts T5's noise mask gives at L=19, r=.3: 6 noise tokens in 2 spans,
    # starting clean and ending noisy.
    assert ul2.span_counts(19, 0.3) == (6, 2)
    assert int(mask.sum()) == 6 and len(noise_runs(mask)) == 2 and not mask[0] and mask[-1]
    inputs, targets = ul2.apply_mask(np.array(DENOISE_TOKENS, dtype=np.int32), mask, s)
    assert inputs.tolist() == [3, 2, 20, 4, 3, 2, 8, 13, 25, 3, 2, 23, 7, 19, 24]
    assert targets.tolist() == [25, 2, 24, 22, 3, 2, 7, 2]


# --- reference §4.1 / §9.8: no noise (r=0) and L=1 --------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 5, 19, 568])
def test_zero_density_gives_no_noise(length: int) -> None:
    assert ul2.span_counts(length, 0.0) == (0, 0)
    mask = ul2.noise_mask(length, 0.0, seed=3, key=7)
    assert mask.dtype == np.bool_ and mask.shape == (length,) and not mask.any()
    tokens = np.arange(2, 2 + length, dtype=np.int32)
    inputs, targets = ul2.apply_mask(tokens, mask, ul2.Sentinels.t5(V))
    # T5-TEST test_denoise_no_corruption: inputs = tokens, targets = [V-1].
    assert inputs.tolist() == tokens.tolist()
    assert targets.tolist() == [V - 1]


def test_t5_no_corruption_vector() -> None:
    s = ul2.Sentinels.t5(26, count=2)
    mask = ul2.noise_mask(len(DENOISE_TOKENS), 0.0)
    inputs, targets = ul2.apply_mask(np.array(DENOISE_TOKENS, dtype=np.int32), mask, s)
    assert inputs.tolist() == DENOISE_TOKENS
    assert targets.tolist() == [25]


@pytest.mark.parametrize("density", [0.15, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("key", [0, 1, 12345])
def test_length_one_has_no_noise(density: float, key: int) -> None:
    # T5 computes on length 2 and cuts to 1: [F], no corruption.
    assert ul2.span_counts(1, density) == (0, 0)
    mask = ul2.noise_mask(1, density, key=key)
    assert mask.tolist() == [False]
    s = ul2.Sentinels.t5(V)
    inputs, targets = ul2.apply_mask(np.array([7], dtype=np.int32), mask, s)
    assert inputs.tolist() == [7] and targets.tolist() == [V - 1]
    inputs, targets = ul2.apply_mask(np.array([7], dtype=np.int32), mask, s, eos_id=1)
    assert inputs.tolist() == [7, 1] and targets.tolist() == [V - 1, 1]


def test_length_zero_gives_empty_outputs() -> None:
    assert ul2.noise_mask(0, 0.15).shape == (0,)
    inputs, targets = ul2.apply_mask(
        np.array([], dtype=np.int32), np.array([], dtype=bool), ul2.Sentinels.t5(V)
    )
    assert inputs.tolist() == [] and targets.tolist() == []


# --- reference §2: small lengths ---------------------------------------------------------------

SMALL_MASKS = {
    0: [],
    1: [False],
    2: [False, True],
    3: [False, False, True],
    4: [False, False, False, True],  # N = clamp(round(.6), 1, 3) = 1, n = 1: noise is the suffix
    5: [False, False, False, False, True],
}


@pytest.mark.parametrize("length", sorted(SMALL_MASKS))
@pytest.mark.parametrize(("seed", "key"), [(0, 0), (1, 2), (2**64 - 1, 2**64 - 1)])
def test_small_length_masks(length: int, seed: int, key: int) -> None:
    assert ul2.noise_mask(length, 0.15, 3.0, seed=seed, key=key).tolist() == SMALL_MASKS[length]


def test_t5_random_spans_noise_mask_structure() -> None:
    # T5-TEST test_random_spans_noise_mask (L=32, r=.25, mu=2): 8 noise tokens in 4 spans,
    # ending in noise. The exact mask depends on TF's RNG, so only the structure is checked.
    assert ul2.span_counts(32, 0.25, 2.0) == (8, 4)
    for key in range(20):
        mask = ul2.noise_mask(32, 0.25, 2.0, key=key)
        assert int(mask.sum()) == 8
        assert len(noise_runs(mask)) == 4
        assert not mask[0] and mask[-1]


# --- reference §3: the planner table -----------------------------------------------------------

# (inputs_length, mean_span_length, noise_density) -> (raw T, targets length incl. EOS)
PLANNER_TABLE = {
    (512, 3, 0.15): (568, 114),
    (512, 8, 0.15): (588, 100),
    (512, 3, 0.5): (766, 512),
    (512, 8, 0.5): (908, 512),
    (512, 64, 0.15): (600, 92),
    (512, 64, 0.5): (1006, 512),
    # T5's helper says (990, 512) but its own mask gives 511 targets at T=990 (reference §3
    # quirk 4); ul2 counts with the mask's arithmetic.
    (512, 32, 0.5): (990, 511),
    (511, 3, 0.15): (567, 114),
    (511, 8, 0.15): (587, 100),
    (511, 3, 0.5): (765, 510),
    (511, 8, 0.5): (906, 511),
    (511, 64, 0.15): (599, 92),
    (511, 64, 0.5): (1004, 511),
    (511, 32, 0.5): (990, 511),
    (1024, 3, 0.15): (1137, 229),
    (1024, 8, 0.15): (1178, 200),
    (1024, 3, 0.5): (1534, 1024),
    (1024, 8, 0.5): (1818, 1024),
    (1024, 64, 0.15): (1200, 184),
    (1024, 64, 0.5): (2014, 1024),
    (1024, 32, 0.5): (1984, 1024),
}

# The mask's (N, n) at the table's raw lengths, where the reference gives them.
TABLE_COUNTS = {
    (568, 3, 0.15): (85, 28),
    (588, 8, 0.15): (88, 11),
    (766, 3, 0.5): (383, 128),
    (908, 8, 0.5): (454, 57),
    (600, 64, 0.15): (90, 1),
    (1006, 64, 0.5): (503, 8),
    (990, 32, 0.5): (495, 15),
    (765, 3, 0.5): (382, 127),
    (1534, 3, 0.5): (767, 256),
    (1200, 64, 0.15): (180, 3),
}


@pytest.mark.parametrize(("inputs_length", "mu", "r"), sorted(PLANNER_TABLE))
def test_planner_table(inputs_length: int, mu: float, r: float) -> None:
    raw, targets_length = PLANNER_TABLE[(inputs_length, mu, r)]
    assert ul2.plan_span_corruption(inputs_length, r, mu) == (raw, targets_length)
    # The planned lengths are what the mask and the sentinel layout really produce.
    n_noise, n_spans = ul2.span_counts(raw, r, mu)
    s = ul2.Sentinels.t5(32100, count=100, on_overflow="t5")
    mask = ul2.noise_mask(raw, r, mu, key=inputs_length)
    tokens = np.arange(2, 2 + raw, dtype=np.int32)
    inputs, targets = ul2.apply_mask(tokens, mask, s, eos_id=1)
    assert len(targets) == n_noise + n_spans + 1 == targets_length
    assert len(inputs) == raw - n_noise + n_spans + 1
    assert len(inputs) == inputs_length or (r == 0.5 and len(inputs) == inputs_length - 1)


@pytest.mark.parametrize(("raw", "mu", "r"), sorted(TABLE_COUNTS))
def test_planner_table_counts(raw: int, mu: float, r: float) -> None:
    assert ul2.span_counts(raw, r, mu) == TABLE_COUNTS[(raw, mu, r)]


def test_helper_quirk_32_half_at_512() -> None:
    assert ul2.plan_span_corruption(512, 0.5, 32.0) == (990, 511)
    mask = ul2.noise_mask(990, 0.5, 32.0, seed=5, key=9)
    s = ul2.Sentinels.t5(32100)
    inputs, targets = ul2.apply_mask(np.arange(2, 992, dtype=np.int32), mask, s, eos_id=1)
    # Reference §3 quirk 4: at T=990 the outputs are 511/511.
    assert (len(inputs), len(targets)) == (511, 511)


@pytest.mark.parametrize(
    ("args", "expected"),
    [((64, 0.2, 2.0), (70, 22)), ((64, 0.2, 1.0), (63, 27))],
)
def test_t5_helper_vectors(args: tuple[int, float, float], expected: tuple[int, int]) -> None:
    assert ul2.plan_span_corruption(*args) == expected


def test_float32_rounding_at_190() -> None:
    # 190 * 0.15 is 28.5 in float64 (the helper rounds to 28) but 28.500002 in float32 (29).
    n_noise, _ = ul2.span_counts(190, 0.15)
    assert n_noise == 29
    assert int(ul2.noise_mask(190, 0.15, key=4).sum()) == 29


# --- reference §6.1: prefix split ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "r", "lo", "hi"), [(511, 0.25, 255, 510), (511, 0.5, 1, 510), (51, 0.25, 25, 50)]
)
def test_prefix_split_bounds(length: int, r: float, lo: int, hi: int) -> None:
    ks = np.array([ul2.prefix_split(length, r, seed=11, key=k) for k in range(4000)])
    assert ks.min() == lo and ks.max() == hi


@pytest.mark.parametrize(("length", "k"), [(0, 0), (1, 0), (2, 1)])
@pytest.mark.parametrize("r", [0.25, 0.5])
def test_prefix_split_small_lengths(length: int, k: int, r: float) -> None:
    # L=1 gives [F] (k=0); L=2 gives [T,F] (k=1).
    for key in range(10):
        assert ul2.prefix_split(length, r, key=key) == k


# --- Sentinels ---------------------------------------------------------------------------------


def test_sentinels_t5_layout() -> None:
    s = ul2.Sentinels.t5(32100)
    assert s.count == len(s) == 100
    assert s.vocab_size == 32100
    assert s.ids.tolist() == [32099 - k for k in range(100)]
    assert s.ids[0] == 32099 and s.ids[99] == 32000  # <extra_id_0>, <extra_id_99>
    assert s.on_overflow == "error" and s.check_collisions is True
    small = ul2.Sentinels.t5(1000, count=3)
    assert small.ids.tolist() == [999, 998, 997]
    assert pickle.loads(pickle.dumps(s)) == s


def test_sentinels_from_ids() -> None:
    s = ul2.Sentinels.from_ids([5, 9, 7])
    assert s.ids.tolist() == [5, 9, 7] and s.count == 3
    tokens = np.array([20, 21, 22, 23, 24], dtype=np.int32)
    mask = np.array([False, True, False, True, True])
    inputs, targets = ul2.apply_mask(tokens, mask, s)
    assert inputs.tolist() == [20, 5, 22, 9]
    assert targets.tolist() == [5, 21, 9, 23, 24]


def test_sentinel_collision_is_rejected() -> None:
    s = ul2.Sentinels.t5(V, count=3)
    tokens = np.array([10, 998, 12], dtype=np.int32)
    mask = np.array([False, False, True])
    with pytest.raises(ValueError, match="tokens"):
        ul2.apply_mask(tokens, mask, s)
    unchecked = ul2.Sentinels.t5(V, count=3, check_collisions=False)
    inputs, targets = ul2.apply_mask(tokens, mask, unchecked)
    assert inputs.tolist() == [10, 998, 999] and targets.tolist() == [999, 12]


# --- overflow policies (reference §4.3) --------------------------------------------------------

FIVE_SPANS = np.array([False, True] * 5)


def test_overflow_error() -> None:
    s = ul2.Sentinels.t5(V, count=3, on_overflow="error")
    with pytest.raises(ul2.SentinelOverflowError) as info:
        ul2.apply_mask(np.arange(10, 20, dtype=np.int32), FIVE_SPANS, s)
    assert isinstance(info.value, ValueError)
    # Exactly as many spans as sentinels is fine.
    inputs, _ = ul2.apply_mask(np.arange(10, 16, dtype=np.int32), FIVE_SPANS[:6], s)
    assert inputs.tolist() == [10, 999, 12, 998, 14, 997]


def test_overflow_t5_keeps_counting_down() -> None:
    s = ul2.Sentinels.t5(V, count=3, on_overflow="t5")
    inputs, targets = ul2.apply_mask(np.arange(10, 20, dtype=np.int32), FIVE_SPANS, s)
    assert inputs.tolist() == [10, 999, 12, 998, 14, 997, 16, 996, 18, 995]
    assert targets.tolist() == [999, 11, 998, 13, 997, 15, 996, 17, 995, 19]


# --- dtypes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "out"),
    [(np.int32, np.int32), (np.uint16, np.int32), (np.int64, np.int64), (np.uint32, np.int64)],
)
def test_apply_mask_output_dtype(dtype: type, out: type) -> None:
    inputs, targets = ul2.apply_mask(TOKENS.astype(dtype), MASK_TTFFTF, ul2.Sentinels.t5(V), eos_id=1)
    assert inputs.dtype == out and targets.dtype == out
    assert inputs.tolist() == [999, 12, 13, 998, 15, 1]
    assert targets.tolist() == [999, 10, 11, 998, 14, 997, 1]

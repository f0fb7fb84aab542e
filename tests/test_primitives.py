"""The SPEC §7 primitives against the T5 / seqio test vectors quoted in the reference
(reference §2, §3, §4.1, §6.1 and §11), their output dtypes, and their bad inputs next to the
accepted edges. ``Sentinels`` are in test_sentinels.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import ul2
from ul2 import testing


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


# ---------------------------------------------------------------------------------------------
# Bad inputs (SPEC §8.7), and the accepted edges next to them
# ---------------------------------------------------------------------------------------------

VOCAB = 32100
S = ul2.Sentinels.t5(VOCAB)
NO_VOCAB = ul2.Sentinels.from_ids(list(range(1000, 1100)))  # no vocab_size: ids only bounded by the dtype
ROW20 = np.arange(2, 22, dtype=np.int32)
MASK20 = np.zeros(20, bool)
MASK20[[4, 5, 10, 19]] = True
BAD_DENSITIES = [math.nan, math.inf, -math.inf, -0.1, 1.5]
BAD_MEANS = [0.0, -1.0, math.nan, -math.inf]

BAD = testing.BadInputs()
add = BAD.add


# ---- span_counts ---------------------------------------------------------------------------
for r in BAD_DENSITIES:
    add(f"span_counts-noise_density={r}", lambda r=r: ul2.span_counts(100, r), ValueError, "noise_density")
for mu in BAD_MEANS:
    add(
        f"span_counts-mean_span_length={mu}",
        lambda mu=mu: ul2.span_counts(100, 0.15, mu),
        ValueError,
        "mean_span_length",
    )
add("span_counts-length=-1", lambda: ul2.span_counts(-1, 0.15), ValueError, "length")
add("span_counts-length=float", lambda: ul2.span_counts(10.0, 0.15), TypeError, "length")
add("span_counts-length=bool", lambda: ul2.span_counts(True, 0.15), TypeError, "length")
add("span_counts-length=str", lambda: ul2.span_counts("10", 0.15), TypeError, "length")
add("span_counts-length=2**64", lambda: ul2.span_counts(2**64, 0.15), ValueError, "length")
add("span_counts-noise_density=str", lambda: ul2.span_counts(10, "0.15"), TypeError, "noise_density")
add("span_counts-noise_density=None", lambda: ul2.span_counts(10, None), TypeError, "noise_density")
add("span_counts-noise_density=bool", lambda: ul2.span_counts(10, True), TypeError, "noise_density")
add("span_counts-mean_span_length=str", lambda: ul2.span_counts(10, 0.15, "3"), TypeError, "mean_span_length")
# r > .5 with n > L - N: T5 crashes; ul2 names the values (SPEC §2).
add("span_counts-r>.5-small-mu", lambda: ul2.span_counts(100, 0.9, 1.0), ValueError, "noise_density")

# ---- noise_mask ----------------------------------------------------------------------------
for r in BAD_DENSITIES:
    add(f"noise_mask-noise_density={r}", lambda r=r: ul2.noise_mask(100, r), ValueError, "noise_density")
for mu in BAD_MEANS:
    add(
        f"noise_mask-mean_span_length={mu}",
        lambda mu=mu: ul2.noise_mask(100, 0.15, mu),
        ValueError,
        "mean_span_length",
    )
add("noise_mask-length=-1", lambda: ul2.noise_mask(-1, 0.15), ValueError, "length")
add("noise_mask-length=float", lambda: ul2.noise_mask(10.5, 0.15), TypeError, "length")
add("noise_mask-num_spans=-1", lambda: ul2.noise_mask(100, 0.15, num_spans=-1), ValueError, "num_spans")
add("noise_mask-num_spans=0", lambda: ul2.noise_mask(100, 0.15, num_spans=0), ValueError, "num_spans")
add("noise_mask-num_spans>N", lambda: ul2.noise_mask(100, 0.15, num_spans=16), ValueError, "num_spans")
add("noise_mask-num_spans=float", lambda: ul2.noise_mask(100, 0.15, num_spans=2.0), TypeError, "num_spans")
add("noise_mask-random_roll=int", lambda: ul2.noise_mask(100, 0.15, random_roll=1), TypeError, "random_roll")
add("noise_mask-seed=-1", lambda: ul2.noise_mask(100, 0.15, seed=-1), ValueError, "seed")
add("noise_mask-seed=2**64", lambda: ul2.noise_mask(100, 0.15, seed=2**64), ValueError, "seed")
add("noise_mask-seed=float", lambda: ul2.noise_mask(100, 0.15, seed=1.0), TypeError, "seed")
add("noise_mask-key=-1", lambda: ul2.noise_mask(100, 0.15, key=-1), ValueError, "key")
add("noise_mask-key=str", lambda: ul2.noise_mask(100, 0.15, key="1"), TypeError, "key")
add("noise_mask-r>.5-small-mu", lambda: ul2.noise_mask(100, 0.9, 1.0), ValueError, "noise_density")
add("noise_mask-r>.5-num_spans", lambda: ul2.noise_mask(100, 0.9, num_spans=20), ValueError, "num_spans")

# ---- apply_mask ----------------------------------------------------------------------------
for dt in [np.float64, np.float32, np.bool_, object, np.int8, np.uint64, np.int16, np.uint8]:
    add(
        f"apply_mask-tokens-dtype={np.dtype(dt)}",
        lambda dt=dt: ul2.apply_mask(ROW20.astype(dt), MASK20, S),
        TypeError,
        "tokens",
    )
add(
    "apply_mask-tokens-0d",
    lambda: ul2.apply_mask(np.int32(5), MASK20[:1], S),
    (TypeError, ValueError),
    "tokens",
)
add(
    "apply_mask-tokens-0d-array",
    lambda: ul2.apply_mask(np.array(5, np.int32), MASK20[:1], S),
    ValueError,
    "tokens",
)
add("apply_mask-tokens-2d", lambda: ul2.apply_mask(ROW20.reshape(4, 5), MASK20, S), ValueError, "tokens")
add("apply_mask-tokens-3d", lambda: ul2.apply_mask(ROW20.reshape(2, 2, 5), MASK20, S), ValueError, "tokens")
add("apply_mask-tokens-str", lambda: ul2.apply_mask("abc", MASK20[:3], S), TypeError, "tokens")
add("apply_mask-tokens-None", lambda: ul2.apply_mask(None, MASK20, S), TypeError, "tokens")
add(
    "apply_mask-tokens-negative",
    lambda: ul2.apply_mask(np.where(ROW20 == 9, -3, ROW20), MASK20, S),
    ValueError,
    "tokens",
    "-3",
)
add(
    "apply_mask-tokens-negative-int64",
    lambda: ul2.apply_mask(np.where(ROW20 == 9, -3, ROW20).astype(np.int64), MASK20, S),
    ValueError,
    "tokens",
)
add(
    "apply_mask-tokens>=vocab",
    lambda: ul2.apply_mask(np.where(ROW20 == 9, VOCAB, ROW20), MASK20, S),
    ValueError,
    "tokens",
    str(VOCAB),
)
add("apply_mask-mask-float", lambda: ul2.apply_mask(ROW20, MASK20.astype(float), S), TypeError, "mask")
add("apply_mask-mask-int", lambda: ul2.apply_mask(ROW20, MASK20.astype(np.int32), S), TypeError, "mask")
add("apply_mask-mask-2d", lambda: ul2.apply_mask(ROW20, MASK20.reshape(4, 5), S), ValueError, "mask")
add("apply_mask-mask-length", lambda: ul2.apply_mask(ROW20, MASK20[:-1], S), ValueError, "mask")
add("apply_mask-mask-None", lambda: ul2.apply_mask(ROW20, None, S), TypeError, "mask")
add("apply_mask-sentinels-str", lambda: ul2.apply_mask(ROW20, MASK20, "S"), TypeError, "sentinels")
add(
    "apply_mask-sentinels-list", lambda: ul2.apply_mask(ROW20, MASK20, [32099, 32098]), TypeError, "sentinels"
)
add("apply_mask-eos_id=-1", lambda: ul2.apply_mask(ROW20, MASK20, S, eos_id=-1), ValueError, "eos_id")
add("apply_mask-eos_id=float", lambda: ul2.apply_mask(ROW20, MASK20, S, eos_id=1.0), TypeError, "eos_id")
add(
    "apply_mask-collision",
    lambda: ul2.apply_mask(np.where(ROW20 == 9, VOCAB - 1, ROW20), MASK20, S),
    ValueError,
    "tokens",
    str(VOCAB - 1),
)
add(
    "apply_mask-overflow",
    lambda: ul2.apply_mask(ROW20, MASK20, ul2.Sentinels.from_ids([100, 101])),
    ul2.SentinelOverflowError,
    "sentinels",
    "3",
    "2",
)
add(
    "apply_mask-overflow-cap",  # cap cannot shorten a given mask
    lambda: ul2.apply_mask(ROW20, MASK20, ul2.Sentinels.from_ids([100, 101], on_overflow="cap")),
    ul2.SentinelOverflowError,
    "sentinels",
    "3",
    "2",
)
add(
    "apply_mask-uint16-eos-too-big",
    lambda: ul2.apply_mask(ROW20.astype(np.uint16), MASK20, NO_VOCAB, eos_id=2**31),
    ValueError,
    "eos_id",
)

# ---- prefix_split --------------------------------------------------------------------------
for r in [math.nan, math.inf, -0.1, 0.6, 1.0, 2.0]:
    add(
        f"prefix_split-suffix_density={r}", lambda r=r: ul2.prefix_split(100, r), ValueError, "suffix_density"
    )
add("prefix_split-suffix_density=str", lambda: ul2.prefix_split(100, "0.5"), TypeError, "suffix_density")
add("prefix_split-length=-1", lambda: ul2.prefix_split(-1), ValueError, "length")
add("prefix_split-length=float", lambda: ul2.prefix_split(10.0), TypeError, "length")
add("prefix_split-seed=-1", lambda: ul2.prefix_split(100, seed=-1), ValueError, "seed")
add("prefix_split-key=-5", lambda: ul2.prefix_split(100, key=-5), ValueError, "key")
add("prefix_split-key=2**64", lambda: ul2.prefix_split(100, key=2**64), ValueError, "key")

# ---- plan_span_corruption ------------------------------------------------------------------
for r in BAD_DENSITIES:
    add(
        f"plan_span_corruption-noise_density={r}",
        lambda r=r: ul2.plan_span_corruption(512, r),
        ValueError,
        "noise_density",
    )
for mu in BAD_MEANS:
    add(
        f"plan_span_corruption-mean_span_length={mu}",
        lambda mu=mu: ul2.plan_span_corruption(512, 0.15, mu),
        ValueError,
        "mean_span_length",
    )
add(
    "plan_span_corruption-inputs_length=-1",
    lambda: ul2.plan_span_corruption(-1, 0.15),
    ValueError,
    "inputs_length",
)
add(
    "plan_span_corruption-inputs_length=0",
    lambda: ul2.plan_span_corruption(0, 0.15),
    ValueError,
    "inputs_length",
)
add(
    "plan_span_corruption-inputs_length=1",
    lambda: ul2.plan_span_corruption(1, 0.15),
    ValueError,
    "inputs_length",
)
add(
    "plan_span_corruption-inputs_length=float",
    lambda: ul2.plan_span_corruption(512.0, 0.15),
    TypeError,
    "inputs_length",
)
add(
    "plan_span_corruption-targets_length=-1",
    lambda: ul2.plan_span_corruption(512, 0.15, targets_length=-1),
    ValueError,
    "targets_length",
)
add(
    "plan_span_corruption-targets_length=1",
    lambda: ul2.plan_span_corruption(512, 0.15, targets_length=1),
    ValueError,
    "targets_length",
)
add(
    "plan_span_corruption-prompt_length=-1",
    lambda: ul2.plan_span_corruption(512, 0.15, prompt_length=-1),
    ValueError,
    "prompt_length",
)
add(
    "plan_span_corruption-prompt_length>=inputs",
    lambda: ul2.plan_span_corruption(512, 0.15, prompt_length=512),
    ValueError,
    "inputs_length",
)
add(
    "plan_span_corruption-inputs_length-huge",  # beyond the planner's search range: say so
    lambda: ul2.plan_span_corruption(2**40, 0.15),
    ValueError,
    "inputs_length",
)
add(
    "plan_span_corruption-inputs_length-huge-with-targets",
    lambda: ul2.plan_span_corruption(2**40, 0.15, targets_length=2**61),
    ValueError,
    "inputs_length",
)
add("plan_span_corruption-eos=int", lambda: ul2.plan_span_corruption(512, 0.15, eos=1), TypeError, "eos")
add(
    "plan_span_corruption-r>.5-small-mu",
    lambda: ul2.plan_span_corruption(512, 0.9, 1.0),
    ValueError,
    "noise_density",
)


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_input(case: testing.BadInput) -> None:
    case.check()


@pytest.mark.parametrize("r", [0.15, 0.5, 0.0, 1.0])
def test_noise_mask_tiny_lengths(r):
    m0 = ul2.noise_mask(0, r)
    assert m0.dtype == np.bool_ and m0.shape == (0,)
    assert ul2.noise_mask(1, r).tolist() == [False]
    assert ul2.noise_mask(2, r).tolist() == ([False, False] if r == 0.0 else [False, True])


def test_span_counts_tiny_lengths_and_zero_density():
    assert ul2.span_counts(0, 0.15) == (0, 0)
    assert ul2.span_counts(1, 0.15) == (0, 0)
    assert ul2.span_counts(2, 0.15) == (1, 1)
    assert ul2.span_counts(100, 0.0) == (0, 0)
    assert ul2.span_counts(100, 1.0, 100.0) == (99, 1)  # N clamped to L-1
    assert ul2.span_counts(100, 0.5) == (50, 17)  # r = .5: n <= L-N still holds


def test_boundary_scalars_are_accepted():
    assert ul2.prefix_split(0) == 0
    assert ul2.prefix_split(1) == 0
    assert ul2.prefix_split(100, 0.0) == 99
    assert 1 <= ul2.prefix_split(100, 0.5) <= 99
    assert ul2.noise_mask(10, 0.15, seed=2**64 - 1, key=2**64 - 1).shape == (10,)
    assert ul2.noise_mask(10, np.float32(0.15), np.int64(3)).shape == (10,)
    assert ul2.span_counts(np.int64(10), np.float64(0.5)) == (5, 2)
    ul2.SpanCorruption(3, 1)  # ints are numbers
    ul2.PrefixLM(0)
    ul2.Sentinels.t5(VOCAB, 1)
    ul2.Sentinels.from_ids(np.array([7, 8], np.uint16))
    ul2.Collator(ul2.presets.t5(), sentinels=S, inputs_length=512, seed=2**64 - 1, dtype="int64")


def test_apply_mask_edge_cases():
    inputs, targets = ul2.apply_mask(np.array([], np.int32), np.array([], bool), S)
    assert inputs.tolist() == [] and targets.tolist() == []  # reference §9.8: L=0 gives empty outputs
    inputs, targets = ul2.apply_mask([7], [False], S, eos_id=1)
    assert inputs.tolist() == [7, 1] and targets.tolist() == [VOCAB - 1, 1]
    inputs, targets = ul2.apply_mask([7, 8], [False, True], S)
    assert inputs.tolist() == [7, VOCAB - 1] and targets.tolist() == [VOCAB - 1, 8]


def test_apply_mask_on_read_only_and_memmap_tokens(tmp_path):
    tokens = np.arange(2, 42, dtype=np.int32)
    mask = ul2.noise_mask(40, 0.3, seed=1)
    want = ul2.apply_mask(tokens, mask, S, eos_id=1)
    ro = tokens.copy()
    ro.flags.writeable = False
    path = tmp_path / "t.i32"
    tokens.tofile(path)
    mm = np.memmap(path, dtype=np.int32, mode="r")
    for t in (ro, mm):
        got = ul2.apply_mask(t, mask, S, eos_id=1)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)

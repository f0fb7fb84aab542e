"""Denoisers, mixtures, presets and the planner (SPEC §1 planner, §3, §4, §8.2, §8.4;
reference §7.2 table): values that print / compare / round-trip, the presets' contents, the
planned lengths of ``ul2()`` at 512/512, sentinel overflow, planned == produced for every
preset, budget and family, the mixture's denoiser frequencies and prefix-length law, and the bad
inputs of denoisers, mixtures, presets and ``plan``."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import fields

import numpy as np
import pytest
import ul2
from scipy import stats
from ul2 import testing

PRESETS = {
    "t5": lambda prompts: ul2.presets.t5(),
    "ul2": ul2.presets.ul2,
    "ul2_paper": ul2.presets.ul2_paper,
    "ul2r": ul2.presets.ul2r,
    "ul2r_legacy": ul2.presets.ul2r_legacy,
}
PROMPTED = ("ul2", "ul2_paper", "ul2r", "ul2r_legacy")
MODES = ("[NLU]", "[NLG]", "[S2S]")


def mode_of(d: ul2.Denoiser) -> str:
    """The mode prompt the released UL2 code gives a denoiser: R -> [NLU], X -> [NLG], S -> [S2S]."""
    if isinstance(d, ul2.PrefixLM):
        return "[S2S]"
    assert isinstance(d, ul2.SpanCorruption)
    return "[NLG]" if (d.mean_span_length >= 12 or d.noise_density >= 0.3) else "[NLU]"


def all_mixtures() -> list[ul2.Mixture]:
    prompts = {"[NLU]": [5], "[NLG]": [6, 7], "[S2S]": [8, 9, 10]}
    out = [ul2.presets.t5()]
    for name in PROMPTED:
        out += [PRESETS[name](None), PRESETS[name](prompts)]
    out.append(
        ul2.Mixture(
            [
                (ul2.CausalLM(prefix=(3, 4)), 2.0),
                (ul2.SpanCorruption(3.0, 0.15, num_spans=4, random_roll=True), 0.5),
            ]
        )
    )
    return out


# ---------------------------------------------------------------------------------------------
# Values: repr, ==, hash, dict / JSON round trips


DENOISERS = [
    ul2.SpanCorruption(3.0, 0.15),
    ul2.SpanCorruption(64.0, 0.5, num_spans=7, prefix=(11, 12), random_roll=True),
    ul2.PrefixLM(),
    ul2.PrefixLM(0.25, prefix=(4,)),
    ul2.CausalLM(),
    ul2.CausalLM(prefix=(1, 2, 3)),
]


@pytest.mark.parametrize("d", DENOISERS, ids=repr)
def test_denoiser_value_semantics(d):
    # repr evaluates back to an equal value
    assert eval(repr(d), {**vars(ul2)}) == d
    # dict round trip through JSON text
    dd = d.to_dict()
    assert dd["type"] == type(d).__name__
    assert set(dd) == {"type"} | {f.name for f in fields(d)}
    assert json.loads(json.dumps(dd)) == dd
    m = ul2.Mixture.from_dict({"denoisers": [{"rate": 1.0, **dd}]})
    assert m.denoisers == (d,)
    # equal values are equal and hash alike; a changed field is a different value
    clone = type(d)(**{f.name: getattr(d, f.name) for f in fields(d)})
    assert clone == d and hash(clone) == hash(d)
    changed = type(d)(**{**{f.name: getattr(d, f.name) for f in fields(d)}, "prefix": (*d.prefix, 99)})
    assert changed != d
    with pytest.raises(AttributeError):
        d.prefix = (1,)  # type: ignore[misc]


def test_prefix_lists_become_tuples():
    a = ul2.SpanCorruption(3.0, 0.15, prefix=[5, 6])
    b = ul2.SpanCorruption(3.0, 0.15, prefix=(5, 6))
    assert a == b and hash(a) == hash(b) and a.prefix == (5, 6)
    assert ul2.PrefixLM(prefix=None).prefix == ()  # type: ignore[arg-type]


@pytest.mark.parametrize("m", all_mixtures(), ids=lambda m: f"{len(m)}-denoisers")
def test_mixture_round_trips(m):
    assert ul2.Mixture.from_json(m.to_json()) == m
    assert ul2.Mixture.from_dict(m.to_dict()) == m
    assert hash(ul2.Mixture.from_json(m.to_json())) == hash(m)
    assert eval(repr(m), {**vars(ul2)}) == m
    # The JSON records every field of every denoiser and its rate.
    doc = json.loads(m.to_json())
    assert len(doc["denoisers"]) == len(m)
    for item, d, rate in zip(doc["denoisers"], m.denoisers, m.rates, strict=True):
        assert item["type"] == type(d).__name__
        assert item["rate"] == rate
        assert set(item) == {"type", "rate"} | {f.name for f in fields(d)}
        for f in fields(d):
            value = getattr(d, f.name)
            assert item[f.name] == (list(value) if isinstance(value, tuple) else value), f.name


def test_mixture_equality_depends_on_rates_and_order():
    a = ul2.Mixture([(ul2.PrefixLM(), 1.0), (ul2.CausalLM(), 1.0)])
    assert a != ul2.Mixture([(ul2.PrefixLM(), 1.0), (ul2.CausalLM(), 2.0)])
    assert a != ul2.Mixture([(ul2.CausalLM(), 1.0), (ul2.PrefixLM(), 1.0)])
    assert a == ul2.Mixture([(ul2.PrefixLM(), 1), (ul2.CausalLM(), 1)])


# ---------------------------------------------------------------------------------------------
# Presets


UL2_SPANS = [(3.0, 0.15), (8.0, 0.15), (3.0, 0.5), (8.0, 0.5), (64.0, 0.15), (64.0, 0.5)]


@pytest.mark.parametrize(("name", "s_density"), [("ul2", 0.5), ("ul2_paper", 0.25)])
def test_ul2_presets_contents(name, s_density):
    m = PRESETS[name](None)
    assert isinstance(m, ul2.Mixture)
    assert len(m) == 7
    assert m.rates == (1.0,) * 7
    for d, (mu, r) in zip(m.denoisers[:6], UL2_SPANS, strict=True):
        assert d == ul2.SpanCorruption(mu, r)
    assert m.denoisers[6] == ul2.PrefixLM(s_density)
    assert all(d.prefix == () for d in m.denoisers)


def test_ul2r_and_t5_presets_contents():
    m = ul2.presets.ul2r()
    assert m.denoisers == (
        ul2.PrefixLM(0.5),
        ul2.SpanCorruption(3.0, 0.15),
        ul2.SpanCorruption(32.0, 0.15),
        ul2.SpanCorruption(3.0, 0.5),
    )
    assert m.rates == (0.5, 0.25, 0.125, 0.125)
    legacy = ul2.presets.ul2r_legacy()
    assert legacy.denoisers == (
        ul2.PrefixLM(0.5),
        ul2.SpanCorruption(3.0, 0.15),
        ul2.SpanCorruption(32.0, 0.5),
    )
    assert legacy.rates == (0.5, 0.25, 0.25)
    assert ul2.presets.t5() == ul2.Mixture([(ul2.SpanCorruption(3.0, 0.15), 1.0)])


PROMPT_IDS = {"[NLU]": (101, 102), "[NLG]": (103,), "[S2S]": (104, 105, 106)}


@pytest.mark.parametrize("name", PROMPTED)
@pytest.mark.parametrize("kind", ["mapping", "callable"])
def test_preset_prompts(name, kind):
    calls: list[str] = []

    def encode(text: str) -> list[int]:
        calls.append(text)
        return list(PROMPT_IDS[text])

    prompts = PROMPT_IDS if kind == "mapping" else encode
    m = PRESETS[name](prompts)
    plain = PRESETS[name](None)
    assert m.rates == plain.rates
    modes = [mode_of(d) for d in m.denoisers]
    for d, p, mode in zip(m.denoisers, plain.denoisers, modes, strict=True):
        assert d.prefix == PROMPT_IDS[mode]
        # Same denoiser otherwise.
        assert type(d)(**{**{f.name: getattr(d, f.name) for f in fields(d)}, "prefix": ()}) == p
    if name == "ul2r":
        assert modes == ["[S2S]", "[NLU]", "[NLG]", "[NLG]"]
    elif name == "ul2r_legacy":
        assert modes == ["[S2S]", "[NLU]", "[NLG]"]
    else:
        assert modes == ["[NLU]", "[NLU]", "[NLG]", "[NLG]", "[NLG]", "[NLG]", "[S2S]"]
    if kind == "callable":
        assert set(calls) <= set(MODES) and set(calls) == set(modes)


def test_preset_prompt_mapping_missing_mode():
    with pytest.raises(ValueError, match="prompts"):
        ul2.presets.ul2({"[NLU]": [1], "[NLG]": [2]})


# ---------------------------------------------------------------------------------------------
# The planner


def test_plan_ul2_512_matches_released_code_table():
    """Reference §7.2 table (verified end to end against the released code)."""
    sentinels = ul2.Sentinels.t5(32228, 128)
    p = ul2.plan(ul2.presets.ul2(), sentinels=sentinels, inputs_length=512, targets_length=512)
    assert len(p) == 7
    assert [r.raw_length for r in p] == [568, 588, 766, 908, 600, 1006, 511]
    assert [r.inputs_length for r in p[:6]] == [512] * 6
    assert [r.targets_length for r in p[:6]] == [114, 100, 512, 512, 92, 512]
    assert [r.spans for r in p[:6]] == [28, 11, 128, 57, 1, 8]
    assert [r.sentinels for r in p[:6]] == [28, 11, 128, 57, 1, 8]
    s = p[6]
    assert isinstance(s.denoiser, ul2.PrefixLM)
    # S: raw 511, inputs <= 510 + EOS, targets in [2, 511] with EOS; no sentinels.
    assert (s.inputs_length, s.targets_length, s.spans, s.sentinels) == (511, 511, 0, 0)
    assert [r.denoiser for r in p] == list(ul2.presets.ul2().denoisers)
    # Without a targets budget the plan is the same (targets fit by construction).
    q = ul2.plan(ul2.presets.ul2(), sentinels=ul2.Sentinels.t5(32228, 128), inputs_length=512)
    assert list(q) == list(p)


def test_plan_overflow_names_denoiser_numbers_and_fix():
    with pytest.raises(ul2.SentinelOverflowError) as info:
        ul2.plan(ul2.presets.ul2(), sentinels=ul2.Sentinels.t5(32100), inputs_length=512, targets_length=512)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "mixture[2]" in msg and "SpanCorruption(3, 0.5)" in msg
    assert "128" in msg and "100" in msg
    assert "on_overflow" in msg


def test_plan_overflow_policies_plan_within_sentinels():
    capped = ul2.plan(
        ul2.presets.ul2(),
        sentinels=ul2.Sentinels.t5(32100, on_overflow="cap"),
        inputs_length=512,
        targets_length=512,
    )
    assert all(r.sentinels <= 100 for r in capped)
    assert capped[2].spans == 100
    assert capped[2].inputs_length <= 512 and capped[2].targets_length <= 512


def test_plan_repr_is_a_table():
    p = ul2.plan(ul2.presets.ul2(PROMPT_IDS), sentinels=ul2.Sentinels.t5(32228, 128), inputs_length=512)
    lines = repr(p).splitlines()
    assert len(lines) == 1 + len(p)
    head = lines[0].split()
    assert head[0] == "denoiser" and "raw" in head and "inputs" in head and "targets" in head
    for line, row in zip(lines[1:], p, strict=True):
        cells = line.split()
        assert [int(c) for c in cells[-5:]] == [
            row.raw_length,
            row.inputs_length,
            row.targets_length,
            row.spans,
            row.sentinels,
        ]
        assert cells[0].startswith(type(row.denoiser).__name__)
    # columns line up: every line has the same width
    assert len({len(line.rstrip()) for line in lines}) == 1


# ---------------------------------------------------------------------------------------------
# Planned == produced (SPEC §8.4)

VOCAB, SENTINEL_COUNT = 40000, 2000
BIG_SENTINELS = ul2.Sentinels.t5(VOCAB, SENTINEL_COUNT)
TOKEN_HIGH = VOCAB - SENTINEL_COUNT  # ordinary ids are < the first sentinel id
BUDGETS = [128, 256, 512, 1024, 4096]


def budget_args(family: str, b: int) -> dict[str, int]:
    return dict(inputs_length=b, targets_length=b) if family == "encdec" else dict(sequence_length=b)


def produced_lengths(out: dict[str, np.ndarray], family: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (inputs length, targets length, whole output length), prompt and EOS included."""
    if family == "encdec":
        inputs = out["attention_mask"].sum(axis=1)
        targets = (out["labels"] != -100).sum(axis=1)
        assert np.array_equal(targets, out["decoder_attention_mask"].sum(axis=1))
        return inputs, targets, inputs + targets
    total = out["attention_mask"].sum(axis=1)
    inputs = out["prefix_lengths"]
    targets = (out["labels"] != -100).sum(axis=1)
    assert np.array_equal(inputs + targets, total)
    return inputs, targets, total


def prompts_for(case: int) -> dict[str, tuple[int, ...]]:
    """Prompts of 1-5 tokens, a different length per mode and per case."""
    lens = [1 + (case + j) % 5 for j in range(3)]
    ids = iter(range(2, 100))
    return {mode: tuple(next(ids) for _ in range(n)) for mode, n in zip(MODES, lens, strict=True)}


CASES = [(name, b, fam) for name in PRESETS for b in BUDGETS for fam in ("encdec", "decoder")]


@pytest.mark.parametrize(("name", "budget", "family"), CASES)
def test_planned_equals_produced(name, budget, family):
    case = CASES.index((name, budget, family))
    prompts = prompts_for(case)
    mixture = PRESETS[name](prompts)
    budget_kw = budget_args(family, budget)
    plan = ul2.plan(mixture, sentinels=BIG_SENTINELS, **budget_kw)
    rng = np.random.default_rng(case)
    batch = 6
    for row in plan:
        d = row.denoiser
        if name != "t5":
            assert d.prefix == prompts[mode_of(d)]
        collator = ul2.Collator(d, sentinels=BIG_SENTINELS, seed=case, **budget_kw)
        rows = rng.integers(2, TOKEN_HIGH, (batch, row.raw_length)).astype(np.int32)
        out = collator(rows, keys=rng.integers(0, 2**40, batch))
        inputs, targets, total = produced_lengths(out, family)
        if family == "encdec":
            assert out["input_ids"].shape[1] == budget
            assert out["labels"].shape[1] == budget
            assert np.all(inputs <= budget) and np.all(targets <= budget)
            assert np.all(inputs >= 1 + len(d.prefix)) and np.all(targets >= 2)
        else:
            assert out["input_ids"].shape[1] == budget
            assert np.all(total <= budget)
        if isinstance(d, ul2.SpanCorruption):
            assert inputs.tolist() == [row.inputs_length] * batch, row
            assert targets.tolist() == [row.targets_length] * batch, row
        else:
            assert np.all(inputs <= row.inputs_length) and np.all(targets <= row.targets_length), row
            # Nothing lost: prompt + raw tokens + two EOS.
            assert total.tolist() == [len(d.prefix) + row.raw_length + 2] * batch
            if family == "decoder":
                assert row.raw_length + len(d.prefix) + 2 == budget  # S fills the decoder budget exactly


ONE_OF_EACH = [
    ul2.SpanCorruption(3.0, 0.15),
    ul2.SpanCorruption(64.0, 0.5, prefix=(7, 8)),
    ul2.PrefixLM(0.5),
    ul2.PrefixLM(0.25, prefix=(9,)),
    ul2.CausalLM(prefix=(3,)),
]


@pytest.mark.parametrize("family", ["encdec", "decoder"])
@pytest.mark.parametrize("d", ONE_OF_EACH, ids=repr)
def test_rows_longer_than_planned_are_rejected(d, family):
    """With long_rows="error", rows longer than the planned raw length for their denoiser are an
    error -- whatever random layout (e.g. prefix split) the key would give."""
    budget_kw = budget_args(family, 128)
    (row,) = ul2.plan(d, sentinels=BIG_SENTINELS, **budget_kw)
    collator = ul2.Collator(d, sentinels=BIG_SENTINELS, long_rows="error", **budget_kw)
    rng = np.random.default_rng(0)
    ok = collator(rng.integers(2, 1000, (8, row.raw_length)).astype(np.int32), keys=list(range(8)))
    assert ok["input_ids"].shape[0] == 8
    for key in range(8):
        too_long = rng.integers(2, 1000, (1, row.raw_length + 1)).astype(np.int32)
        with pytest.raises(ValueError, match=r"rows\[0\]"):
            collator(too_long, keys=[key])


@pytest.mark.parametrize("family", ["encdec", "decoder"])
def test_planned_equals_produced_in_a_mixture_collator(family):
    """A mixture collator gives each key the plan row of the denoiser it draws."""
    mixture = ul2.presets.ul2(prompts_for(0))
    budget_kw = budget_args(family, 256)
    plan = ul2.plan(mixture, sentinels=BIG_SENTINELS, **budget_kw)
    collator = ul2.Collator(mixture, sentinels=BIG_SENTINELS, seed=3, **budget_kw)
    stream = np.zeros(400 * 600, np.int32)
    ds = ul2.DenoisingDataset(stream, mixture, sentinels=BIG_SENTINELS, seed=3, **budget_kw)
    keys = list(range(300))
    rng = np.random.default_rng(1)
    # The dataset tells which denoiser each key draws; the collator draws the same with the same seed.
    which = [ds.denoiser(k) for k in keys]
    rows = [rng.integers(2, TOKEN_HIGH, plan[j].raw_length).astype(np.int32) for j in which]
    out = collator(rows, keys=keys)
    inputs, targets, _ = produced_lengths(out, family)
    for i, j in enumerate(which):
        row = plan[j]
        if isinstance(row.denoiser, ul2.SpanCorruption):
            assert (inputs[i], targets[i]) == (row.inputs_length, row.targets_length)
        else:
            assert inputs[i] <= row.inputs_length and targets[i] <= row.targets_length
        prompt = row.denoiser.prefix
        ids = out["input_ids"][i]
        assert ids[: len(prompt)].tolist() == list(prompt)


# ---------------------------------------------------------------------------------------------
# Statistics (SPEC §8.2): denoiser frequencies and the prefix-length law


@pytest.mark.parametrize("name", ["ul2r", "ul2"])
def test_denoiser_frequencies_match_rates(name):
    mixture = PRESETS[name](None)
    n = 20000
    plan = ul2.plan(mixture, sentinels=BIG_SENTINELS, sequence_length=64)
    stream = np.zeros(n * max(r.raw_length for r in plan), np.uint16)
    ds = ul2.DenoisingDataset(stream, mixture, sentinels=BIG_SENTINELS, sequence_length=64, seed=12345)
    assert ds.num_samples >= n
    drawn = np.array([ds.denoiser(k) for k in range(n)])
    counts = np.bincount(drawn, minlength=len(mixture))
    assert counts.size == len(mixture)
    rates = np.array(mixture.rates)
    expected = n * rates / rates.sum()
    p = stats.chisquare(counts, expected).pvalue
    assert p > 1e-4, (counts, expected, p)
    # The batch reports the same draws.
    assert ds.batch(list(range(50)))["denoiser"].tolist() == drawn[:50].tolist()


def test_denoiser_choice_is_not_the_key_modulo_the_mixture():
    ds = ul2.DenoisingDataset(
        np.zeros(200000, np.int32), ul2.presets.ul2(), sentinels=BIG_SENTINELS, sequence_length=64, seed=0
    )
    drawn = [ds.denoiser(k) for k in range(2000)]
    # Pairs of consecutive draws: independent draws give all 49 combinations.
    assert len(set(itertools.pairwise(drawn))) == 49


@pytest.mark.parametrize("suffix_density", [0.5, 0.25])
def test_prefix_lengths_uniform(suffix_density):
    seq = 34
    plan = ul2.plan(ul2.PrefixLM(suffix_density), sentinels=BIG_SENTINELS, sequence_length=seq)
    length = plan[0].raw_length
    assert length == seq - 2
    hi = length - 1
    lo = min(hi, max(1, int(np.round(np.float32(1 - 2 * suffix_density) * np.float32(hi)))))
    n = 20000
    collator = ul2.Collator(
        ul2.PrefixLM(suffix_density), sentinels=BIG_SENTINELS, sequence_length=seq, format="decoder", seed=99
    )
    rows = np.random.default_rng(0).integers(2, 1000, (n, length)).astype(np.int32)
    out = collator(rows, keys=np.arange(n))
    k = out["prefix_lengths"] - 1  # minus EOS (no prompt)
    assert k.min() == lo and k.max() == hi
    counts = np.bincount(k - lo, minlength=hi - lo + 1)
    assert counts.size == hi - lo + 1
    p = stats.chisquare(counts).pvalue
    assert p > 1e-4, (counts, p)
    # The collator's split is ul2.prefix_split's, key by key.
    sample = [ul2.prefix_split(length, suffix_density, seed=99, key=key) for key in range(300)]
    assert k[:300].tolist() == sample


# ---------------------------------------------------------------------------------------------
# Bad inputs (SPEC §8.7): denoisers, mixtures and their dict / JSON form, presets, the planner
# ---------------------------------------------------------------------------------------------

S = ul2.Sentinels.t5(32100)
T5 = ul2.presets.t5()
PROMPTS = {"[NLU]": [3], "[NLG]": [4], "[S2S]": [5]}
BAD_DENSITIES = [math.nan, math.inf, -math.inf, -0.1, 1.5]
BAD_MEANS = [0.0, -1.0, math.nan, -math.inf]

BAD = testing.BadInputs()
add = BAD.add


# ---- SpanCorruption / PrefixLM / Mixture ---------------------------------------------------
for r in BAD_DENSITIES:
    add(
        f"SpanCorruption-noise_density={r}",
        lambda r=r: ul2.SpanCorruption(3.0, r),
        ValueError,
        "noise_density",
    )
for mu in BAD_MEANS:
    add(
        f"SpanCorruption-mean_span_length={mu}",
        lambda mu=mu: ul2.SpanCorruption(mu, 0.15),
        ValueError,
        "mean_span_length",
    )
add(
    "SpanCorruption-mean_span_length=str",
    lambda: ul2.SpanCorruption("3", 0.15),
    TypeError,
    "mean_span_length",
)
add("SpanCorruption-noise_density=None", lambda: ul2.SpanCorruption(3.0, None), TypeError, "noise_density")
add("SpanCorruption-num_spans=0", lambda: ul2.SpanCorruption(3.0, 0.15, num_spans=0), ValueError, "num_spans")
add(
    "SpanCorruption-num_spans=-2",
    lambda: ul2.SpanCorruption(3.0, 0.15, num_spans=-2),
    ValueError,
    "num_spans",
)
add(
    "SpanCorruption-num_spans=float",
    lambda: ul2.SpanCorruption(3.0, 0.15, num_spans=2.0),
    TypeError,
    "num_spans",
)
add(
    "SpanCorruption-random_roll=int",
    lambda: ul2.SpanCorruption(3.0, 0.15, random_roll=1),
    TypeError,
    "random_roll",
)
add(
    "SpanCorruption-prefix-negative",
    lambda: ul2.SpanCorruption(3.0, 0.15, prefix=(3, -1)),
    ValueError,
    "prefix",
)
add("SpanCorruption-prefix-str", lambda: ul2.SpanCorruption(3.0, 0.15, prefix="[NLU]"), TypeError, "prefix")
add(
    "SpanCorruption-prefix-float", lambda: ul2.SpanCorruption(3.0, 0.15, prefix=(3, 1.5)), TypeError, "prefix"
)
add("SpanCorruption-prefix-int", lambda: ul2.SpanCorruption(3.0, 0.15, prefix=5), TypeError, "prefix")
for r in [math.nan, math.inf, -0.1, 0.6, 1.5]:
    add(f"PrefixLM-suffix_density={r}", lambda r=r: ul2.PrefixLM(r), ValueError, "suffix_density")
add("PrefixLM-suffix_density=str", lambda: ul2.PrefixLM("0.5"), TypeError, "suffix_density")
add("PrefixLM-prefix-negative", lambda: ul2.PrefixLM(0.5, prefix=[-4]), ValueError, "prefix")
add("CausalLM-prefix-bytes", lambda: ul2.CausalLM(prefix=b"[S2S]"), TypeError, "prefix")
_D = ul2.SpanCorruption(3.0, 0.15)
add("Mixture-empty", lambda: ul2.Mixture([]), ValueError, "mixture")
for rate in [-1.0, math.nan, math.inf]:
    add(f"Mixture-rate={rate}", lambda rate=rate: ul2.Mixture([(_D, rate)]), ValueError, "rate")
add("Mixture-all-rates-zero", lambda: ul2.Mixture([(_D, 0.0), (ul2.PrefixLM(), 0.0)]), ValueError, "rate")
add("Mixture-rate=str", lambda: ul2.Mixture([(_D, "1")]), TypeError, "rate")
add("Mixture-rate=bool", lambda: ul2.Mixture([(_D, True)]), TypeError, "rate")
add("Mixture-not-a-pair", lambda: ul2.Mixture([(_D,)]), TypeError, "mixture")
add("Mixture-not-a-denoiser", lambda: ul2.Mixture([("R", 1.0)]), TypeError, "mixture")

# ---- plan ----------------------------------------------------------------------------------
add("plan-no-budget", lambda: ul2.plan(T5, sentinels=S), ValueError, "inputs_length")
add("plan-inputs_length=1", lambda: ul2.plan(T5, sentinels=S, inputs_length=1), ValueError, "inputs_length")
add("plan-inputs_length=0", lambda: ul2.plan(T5, sentinels=S, inputs_length=0), ValueError, "inputs_length")
add("plan-inputs_length=-1", lambda: ul2.plan(T5, sentinels=S, inputs_length=-1), ValueError, "inputs_length")
add(
    "plan-inputs_length=float",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=512.0),
    TypeError,
    "inputs_length",
)
add(
    "plan-targets_length=1",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=512, targets_length=1),
    ValueError,
    "targets_length",
)
add(
    "plan-both-budgets",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=512, sequence_length=1024),
    ValueError,
    "sequence_length",
)
add("plan-sentinels=str", lambda: ul2.plan(T5, sentinels="S", inputs_length=512), TypeError, "sentinels")
add("plan-mixture=str", lambda: ul2.plan("t5", sentinels=S, inputs_length=512), TypeError, "mixture")
add(
    "plan-overflow",
    lambda: ul2.plan(ul2.presets.ul2(), sentinels=S, inputs_length=512),
    ul2.SentinelOverflowError,
    "mixture[",
    "100",
)
add(
    "plan-prompt-too-long",
    lambda: ul2.plan(ul2.SpanCorruption(3.0, 0.15, prefix=range(2, 600)), sentinels=S, inputs_length=512),
    ValueError,
    "inputs_length",
)

# ---- plan: decoder-only budgets, types and per-kind budgets ----------------------------------
for v in (0, 1, -1):
    add(
        f"plan-sequence_length={v}",
        lambda v=v: ul2.plan(T5, sentinels=S, sequence_length=v),
        ValueError,
        "sequence_length",
    )
add(
    "plan-sequence_length=float",
    lambda: ul2.plan(T5, sentinels=S, sequence_length=64.0),
    TypeError,
    "sequence_length",
)
add(
    "plan-inputs_length=bool",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=True),
    TypeError,
    "inputs_length",
)
add(
    "plan-inputs_length=2**64",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=2**64),
    ValueError,
    "inputs_length",
)
add(
    "plan-sequence_length-huge",
    lambda: ul2.plan(T5, sentinels=S, sequence_length=2**62),
    ValueError,
    "sequence_length",
)
add(
    "plan-targets_length=float",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=512, targets_length=9.0),
    TypeError,
    "targets_length",
)
add(
    "plan-targets_length-only",
    lambda: ul2.plan(T5, sentinels=S, targets_length=100),
    ValueError,
    "inputs_length",
)
add("plan-eos=int", lambda: ul2.plan(T5, sentinels=S, inputs_length=512, eos=1), TypeError, "eos")
add("plan-eos=None", lambda: ul2.plan(T5, sentinels=S, inputs_length=512, eos=None), TypeError, "eos")
add("plan-mixture=None", lambda: ul2.plan(None, sentinels=S, inputs_length=512), TypeError, "mixture")
add(
    "plan-mixture-bad-rate",
    lambda: ul2.plan([(ul2.CausalLM(), -1.0)], sentinels=S, inputs_length=512),
    ValueError,
    "rate",
)
add("plan-sentinels-missing", lambda: ul2.plan(T5, sentinels=None, inputs_length=512), TypeError, "sentinels")
add(
    "plan-prefix_lm-inputs_length=2",
    lambda: ul2.plan(ul2.PrefixLM(), sentinels=S, inputs_length=2),
    ValueError,
    "inputs_length",
)
add(
    "plan-prefix_lm-targets_length=1",
    lambda: ul2.plan(ul2.PrefixLM(), sentinels=S, inputs_length=512, targets_length=1),
    ValueError,
    "targets_length",
)
add(
    "plan-causal-targets_length=1",
    lambda: ul2.plan(ul2.CausalLM(), sentinels=S, inputs_length=512, targets_length=1),
    ValueError,
    "targets_length",
)
add(
    "plan-causal-prompt-too-long",
    lambda: ul2.plan(ul2.CausalLM(prefix=range(2, 20)), sentinels=S, inputs_length=10),
    ValueError,
    "inputs_length",
)
add(
    "plan-decoder-prompt-too-long",
    lambda: ul2.plan(ul2.PrefixLM(prefix=range(2, 40)), sentinels=S, sequence_length=32),
    ValueError,
    "sequence_length",
)
add(
    "plan-decoder-overflow",
    lambda: ul2.plan(ul2.presets.ul2(), sentinels=S, sequence_length=1024),
    ul2.SentinelOverflowError,
    "mixture[",
)
add(
    "plan-num_spans-too-many-for-budget",
    lambda: ul2.plan(
        ul2.SpanCorruption(3.0, 0.15, num_spans=50), sentinels=S, inputs_length=64, targets_length=40
    ),
    ValueError,
    "length",
)

# ---- presets and prompts ---------------------------------------------------------------------
for name in ("ul2", "ul2_paper", "ul2r"):
    preset = getattr(ul2.presets, name)
    add(f"{name}-prompts=int", lambda p=preset: p(prompts=5), TypeError, "prompts")
    add(f"{name}-prompts=list", lambda p=preset: p(prompts=[3, 4, 5]), TypeError, "prompts")
    add(f"{name}-prompts-callable->None", lambda p=preset: p(prompts=lambda s: None), TypeError, "prompts")
    add(f"{name}-prompts-callable->int", lambda p=preset: p(prompts=len), TypeError, "prompts")
    add(f"{name}-prompts-callable->str", lambda p=preset: p(prompts=lambda s: s), TypeError, "prompts")
    add(
        f"{name}-prompts-negative-id",
        lambda p=preset: p(prompts={**PROMPTS, "[S2S]": [-1]}),
        ValueError,
        "prefix",
    )
    add(
        f"{name}-prompts-float-id",
        lambda p=preset: p(prompts={**PROMPTS, "[S2S]": [1.5]}),
        TypeError,
        "prefix",
    )
    add(f"{name}-prompts-missing-mode", lambda p=preset: p(prompts={"[NLU]": [3]}), ValueError, "prompts")
add("t5-prompts", lambda: ul2.presets.t5(prompts=PROMPTS), TypeError, "prompts")

# ---- Mixture, dict / JSON --------------------------------------------------------------------
add("Mixture(None)", lambda: ul2.Mixture(None), TypeError, "mixture")
add("Mixture(int)", lambda: ul2.Mixture(5), TypeError, "mixture")
add("Mixture-triple", lambda: ul2.Mixture([(_D, 1.0, 2)]), TypeError, "mixture")
add("Mixture-dict", lambda: ul2.Mixture({_D: 1.0}), TypeError, "mixture")
add("Mixture-rate=None", lambda: ul2.Mixture([(_D, None)]), TypeError, "rate")
add("Mixture-rate=10**400", lambda: ul2.Mixture([(_D, 10**400)]), (TypeError, ValueError), "rate")
add("Mixture-rate=np.nan", lambda: ul2.Mixture([(_D, np.float64("nan"))]), ValueError, "rate")
add("Mixture-rate=-0.5-with-good", lambda: ul2.Mixture([(_D, 1.0), (_D, -0.5)]), ValueError, "rate")
add("Mixture.from_dict({})", lambda: ul2.Mixture.from_dict({}), (TypeError, ValueError), "denoisers")
add(
    "Mixture.from_dict-no-rate",
    lambda: ul2.Mixture.from_dict({"denoisers": [{"type": "PrefixLM"}]}),
    (TypeError, ValueError),
    "rate",
)
add(
    "Mixture.from_dict-unknown-type",
    lambda: ul2.Mixture.from_dict({"denoisers": [{"type": "Bogus", "rate": 1.0}]}),
    ValueError,
    "Bogus",
)
add(
    "Mixture.from_dict-unknown-field",
    lambda: ul2.Mixture.from_dict({"denoisers": [{"type": "PrefixLM", "rate": 1.0, "density": 0.5}]}),
    ValueError,
    "density",
)
add(
    "Mixture.from_dict-missing-field",
    lambda: ul2.Mixture.from_dict(
        {"denoisers": [{"type": "SpanCorruption", "rate": 1.0, "mean_span_length": 3}]}
    ),
    TypeError,
    "noise_density",
)
add(
    "Mixture.from_dict-bad-value",
    lambda: ul2.Mixture.from_dict({"denoisers": [{"type": "PrefixLM", "rate": 1.0, "suffix_density": 0.9}]}),
    ValueError,
    "suffix_density",
)
add("Mixture.from_json-not-json", lambda: ul2.Mixture.from_json("{"), ValueError)

# ---- denoiser constructors: huge numbers, bools, None and nested prompts ----------------------
add(
    "SpanCorruption-num_spans=2**64",
    lambda: ul2.SpanCorruption(3.0, 0.15, num_spans=2**64),
    ValueError,
    "num_spans",
)
add(
    "SpanCorruption-num_spans=bool",
    lambda: ul2.SpanCorruption(3.0, 0.15, num_spans=True),
    TypeError,
    "num_spans",
)
add(
    "SpanCorruption-mean_span_length=bool",
    lambda: ul2.SpanCorruption(True, 0.15),
    TypeError,
    "mean_span_length",
)
add(
    "SpanCorruption-mean_span_length=10**400",
    lambda: ul2.SpanCorruption(10**400, 0.15),
    (TypeError, ValueError),
    "mean_span_length",
)
add(
    "SpanCorruption-noise_density=10**400",
    lambda: ul2.SpanCorruption(3.0, 10**400),
    ValueError,
    "noise_density",
)
add(
    "SpanCorruption-random_roll=None",
    lambda: ul2.SpanCorruption(3.0, 0.15, random_roll=None),
    TypeError,
    "random_roll",
)
add(
    "SpanCorruption-prefix=[2**63]",
    lambda: ul2.SpanCorruption(3.0, 0.15, prefix=[2**63]),
    ValueError,
    "prefix",
)
add(
    "SpanCorruption-prefix-float-array",
    lambda: ul2.SpanCorruption(3.0, 0.15, prefix=np.array([1.5])),
    TypeError,
    "prefix",
)
add("SpanCorruption-prefix-nested", lambda: ul2.SpanCorruption(3.0, 0.15, prefix=[[1]]), TypeError, "prefix")
add("PrefixLM-suffix_density=None", lambda: ul2.PrefixLM(None), TypeError, "suffix_density")
add("PrefixLM-suffix_density=bool", lambda: ul2.PrefixLM(False), TypeError, "suffix_density")
add("PrefixLM-suffix_density=10**400", lambda: ul2.PrefixLM(10**400), ValueError, "suffix_density")
add("PrefixLM-prefix=[2**64]", lambda: ul2.PrefixLM(0.5, prefix=[2**64]), ValueError, "prefix")
add("CausalLM-prefix=int", lambda: ul2.CausalLM(5), TypeError, "prefix")
add("CausalLM-prefix-negative", lambda: ul2.CausalLM(prefix=[1, -2]), ValueError, "prefix")
add("CausalLM-prefix=[2**63]", lambda: ul2.CausalLM(prefix=[2**63]), ValueError, "prefix")
add("CausalLM-prefix-None-item", lambda: ul2.CausalLM(prefix=[None]), TypeError, "prefix")


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_input(case: testing.BadInput) -> None:
    case.check()


@pytest.mark.parametrize("rate", [1.0, 1e308, 5e-324, 1e-310], ids=["1", "1e308", "5e-324", "1e-310"])
def test_equal_rates_give_equal_frequencies_at_any_scale(rate):
    """Rates are unnormalised: (r, r) is a 50/50 mixture for any r > 0. Near float max the sum
    overflows to inf and for subnormal r the products lose precision; neither may skew the
    draws (3000+ samples: 50% +- 4 sigma)."""
    a, b = ul2.CausalLM(prefix=[3]), ul2.CausalLM(prefix=[4])
    d = ul2.DenoisingDataset(
        np.arange(2, 200_002, dtype=np.int32),
        ul2.Mixture([(a, rate), (b, rate)]),
        sentinels=S,
        inputs_length=64,
    )
    n = d.num_samples
    first = sum(d.denoiser(k) == 0 for k in range(n))
    assert abs(first - n / 2) < 4 * math.sqrt(n / 4), f"{first} of {n} samples drew mixture[0]"

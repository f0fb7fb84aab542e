"""FillInTheMiddle: layouts in both families, exact planning (Hypothesis), mixing with UL2's
denoisers, documents, keyed draws, serialisation and bad arguments."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import ul2
from hypothesis import given
from hypothesis import strategies as st
from ul2 import testing

SENTINELS = ul2.Sentinels.t5(32000, 100)
PRE, MID, SUF = 31000, 31001, 31002  # ordinary ids; the tokens below stay under 30000
EOS = 1
U64 = st.integers(0, 2**64 - 1)


def fim(**kw: object) -> ul2.FillInTheMiddle:
    return ul2.FillInTheMiddle(PRE, MID, SUF, **kw)  # type: ignore[arg-type]


def tokens(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 30000, n).astype(np.int32)


def test_psm_and_spm_layouts_in_both_families() -> None:
    raw = tokens(40)
    for spm_rate, order in ((0.0, "psm"), (1.0, "spm")):
        for loss in ("all", "middle"):
            d = fim(spm_rate=spm_rate, loss=loss, prefix=(7,))
            dec = ul2.Collator(d, sentinels=SENTINELS, sequence_length=40 + 1 + 3 + 1)
            out = dec(raw[None, :], keys=[5])
            seq = out["input_ids"][0]
            assert out["attention_mask"][0].all()  # filled exactly
            assert seq[0] == 7 and seq[1] == PRE and seq[-1] == EOS
            if order == "spm":
                assert seq[2] == SUF
            labels = out["labels"][0]
            if loss == "all":
                assert out["prefix_lengths"][0] == 1
                np.testing.assert_array_equal(labels[1:], seq[1:])
            else:
                p = int(out["prefix_lengths"][0])
                assert seq[p - 1] == MID or order == "spm"
                assert (labels[:p] == -100).all() and (labels[p:] == seq[p:]).all()
            (inp, tgt) = testing.rows(_as_ds(dec, "decoder"), out)[0]
            testing.check_fim_example(raw, inp, tgt, d, split=loss)
            # Encoder-decoder: the middle is the target, whatever the loss.
            ed = ul2.Collator(d, sentinels=SENTINELS, inputs_length=60)
            out = ed(raw[None, :], keys=[5])
            (inp, tgt) = testing.rows(_as_ds(ed, "hf"), out)[0]
            testing.check_fim_example(raw, inp, tgt, d, split="middle")
            assert inp[-1] != EOS and tgt[-1] == EOS


class _as_ds:  # the one attribute testing.rows reads
    def __init__(self, _c: object, fmt: str) -> None:
        self.format = fmt


def test_pieces_are_read_back() -> None:
    d = fim(spm_rate=0.0, loss="middle", prefix=(7, 8))
    raw = tokens(10)
    out = ul2.Collator(d, sentinels=SENTINELS, inputs_length=20)(raw[None, :], keys=[11])
    inp = out["input_ids"][0][out["attention_mask"][0] == 1]
    tgt = out["labels"][0][out["labels"][0] != -100]
    a, m, s, spm_seen, split = testing.fim_pieces(inp, tgt, d)
    assert (a + m + s, split) == (10, "middle") and (not spm_seen or a == 0)
    assert inp.tolist() == [7, 8, PRE, *raw[:a], SUF, *raw[a + m :], MID]
    assert tgt.tolist() == [*raw[a : a + m], EOS]


@given(
    budget=st.integers(5, 700),
    decoder=st.booleans(),
    targets=st.none() | st.integers(2, 400),
    loss=st.sampled_from(["all", "middle"]),
    spm_rate=st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0),
    prompt=st.integers(0, 3),
    eos=st.booleans(),
    seed=U64,
    keys=st.lists(st.integers(0, 2**63 - 1), min_size=6, max_size=6),
)
def test_planned_lengths_are_produced(
    budget: int,
    decoder: bool,
    targets: int | None,
    loss: str,
    spm_rate: float,
    prompt: int,
    eos: bool,
    seed: int,
    keys: list[int],
) -> None:
    p = tuple(range(2, 2 + prompt))
    d = fim(spm_rate=spm_rate, loss=loss, prefix=p)
    e = int(eos)
    lengths = {"sequence_length": budget} if decoder else {"inputs_length": budget, "targets_length": targets}
    need_in = prompt + 3 + 1
    if (decoder and budget < need_in + e) or (not decoder and (budget < need_in or (targets or 99) < 1 + e)):
        with pytest.raises(ValueError, match="too small"):
            ul2.plan(d, sentinels=SENTINELS, eos=eos, **lengths)  # type: ignore[arg-type]
        return
    (row,) = ul2.plan(d, sentinels=SENTINELS, eos=eos, **lengths)  # type: ignore[arg-type]
    if decoder:
        assert prompt + 3 + row.raw_length + e == budget  # the budget filled exactly
    else:
        by_targets = targets is not None and row.raw_length + e == targets
        assert prompt + 3 + row.raw_length == budget or by_targets
    c = ul2.Collator(d, sentinels=SENTINELS, eos_id=EOS if eos else None, seed=seed, **lengths)  # type: ignore[arg-type]
    raw = tokens(row.raw_length, seed % 2**32)
    out = c(np.stack([raw] * len(keys)), keys=keys)
    for i in range(len(keys)):
        if decoder:
            n = int(out["attention_mask"][i].sum())
            assert n == budget
            pl = int(out["prefix_lengths"][i])
            inp, tgt = out["input_ids"][i, :pl], out["input_ids"][i, pl:n]
            assert int((out["labels"][i] != -100).sum()) == len(tgt)
        else:
            inp = out["input_ids"][i][out["attention_mask"][i] == 1]
            tgt = out["labels"][i][out["decoder_attention_mask"][i] == 1]
            assert len(inp) + len(tgt) == prompt + 3 + row.raw_length + e
        assert len(inp) <= row.inputs_length and len(tgt) <= row.targets_length
        split = loss if decoder else "middle"
        testing.check_fim_example(raw, inp, tgt, d, eos_id=EOS if eos else None, split=split)


def test_mixed_with_ul2_in_a_dataset_respecting_documents() -> None:
    mix = ul2.presets.ul2()
    mixture = ul2.Mixture([*mix.entries, (fim(loss="middle"), 2.0), (fim(spm_rate=0.3), 1.0)])
    rng = np.random.default_rng(3)
    docs = [rng.integers(3, 30000, rng.integers(20, 400)) for _ in range(60)]
    flat = np.concatenate(docs).astype(np.int32)
    offsets = np.cumsum([0, *map(len, docs)])[:-1]
    for lengths in ({"sequence_length": 256}, {"inputs_length": 128, "targets_length": 128}):
        ds = ul2.DenoisingDataset(
            flat, mixture, sentinels=SENTINELS, doc_offsets=offsets, documents="respect", **lengths
        )
        testing.check_accounting(ds)
        keys = [k for k in range(ds.num_samples) if ds.denoiser(k) >= len(mix)]
        assert len(keys) > 10
        testing.check_batch(ds, keys)
        # No sample, so no split, crosses a document.
        ends = set(np.cumsum(list(map(len, docs))).tolist())
        for k in keys:
            lo, hi = ds.span(k)
            assert not any(lo < b < hi for b in ends)


def test_draws_are_keyed_and_epoch_0_is_the_seed() -> None:
    d = fim()
    raw = np.stack([tokens(50, s) for s in range(8)])
    c = ul2.Collator(d, sentinels=SENTINELS, sequence_length=55, seed=9)
    whole = c(raw, keys=list(range(100, 108)))["input_ids"]
    parts = np.concatenate([c(raw[i : i + 1], keys=[100 + i])["input_ids"] for i in range(8)])
    np.testing.assert_array_equal(whole, parts)
    e0 = ul2.Collator(d, sentinels=SENTINELS, sequence_length=55, seed=9, epoch=0)
    np.testing.assert_array_equal(e0(raw, keys=list(range(100, 108)))["input_ids"], whole)
    e1 = ul2.Collator(d, sentinels=SENTINELS, sequence_length=55, seed=9, epoch=1)
    assert not np.array_equal(e1(raw, keys=list(range(100, 108)))["input_ids"], whole)


def test_serialises_and_labels() -> None:
    d = fim(spm_rate=0.25, loss="middle", prefix=(5,))
    assert ul2.denoisers.denoiser_from_dict(d.to_dict()) == d
    m = ul2.Mixture([(ul2.SpanCorruption(3, 0.15), 1.0), (d, 0.5)])
    assert ul2.Mixture.from_json(m.to_json()) == m
    assert d.label == "FIM(spm=0.25, loss=middle) +1 prompt"
    assert fim().label == "FIM(spm=0.5)"
    with pytest.raises(TypeError):
        ul2.FillInTheMiddle(PRE, MID, SUF, 0.5)  # type: ignore[misc]  # spm_rate is keyword-only


BAD = testing.BadInputs()
BAD.add("same ids", lambda: ul2.FillInTheMiddle(5, 5, 6), ValueError, "middle_id=5", "prefix_id")
BAD.add("suffix = prefix", lambda: ul2.FillInTheMiddle(5, 6, 5), ValueError, "suffix_id=5")
BAD.add("negative id", lambda: ul2.FillInTheMiddle(-1, 6, 7), ValueError, "prefix_id=-1")
BAD.add("str id", lambda: ul2.FillInTheMiddle("a", 6, 7), TypeError, "prefix_id")  # type: ignore[arg-type]
BAD.add("spm_rate > 1", lambda: fim(spm_rate=1.5), ValueError, "spm_rate=1.5")
BAD.add("spm_rate < 0", lambda: fim(spm_rate=-0.1), ValueError, "spm_rate=-0.1")
BAD.add("spm_rate nan", lambda: fim(spm_rate=math.nan), ValueError, "spm_rate=nan")
BAD.add("loss", lambda: fim(loss="prefix"), ValueError, 'loss="prefix"', "'all' or 'middle'")
BAD.add("loss type", lambda: fim(loss=1), TypeError, "loss=1")
BAD.add(
    "sentinel id",
    lambda: ul2.plan(ul2.FillInTheMiddle(31999, 6, 7), sentinels=SENTINELS, sequence_length=64),
    ValueError,
    "prefix_id=31999",
    "sentinel",
)
BAD.add(
    "sentinel id in a collator",
    lambda: ul2.Collator(ul2.FillInTheMiddle(5, 31990, 7), sentinels=SENTINELS, inputs_length=64),
    ValueError,
    "middle_id=31990",
)
BAD.add(
    "outside the vocabulary",
    lambda: ul2.Collator(ul2.FillInTheMiddle(5, 6, 40000), sentinels=SENTINELS, sequence_length=64),
    ValueError,
    "suffix_id=40000",
)
BAD.add(
    "too small",
    lambda: ul2.plan(fim(prefix=(1, 2)), sentinels=SENTINELS, sequence_length=6),
    ValueError,
    "sequence_length=6",
)


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_arguments(case: testing.BadInput) -> None:
    case.check()


def test_the_readme_snippet_runs() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Fill-in-the-middle\n", 1)[1].split("\n### ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    exec(compile(code, "README.md", "exec"), {})

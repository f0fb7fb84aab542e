"""Output formats and packing (SPEC §5; reference §7.4 and §8): the seqio vectors, and a round
trip through every format, packed and not: each example's inputs / targets are read back from
the arrays (segment ids, masks, lengths), the sentinel layout is inverted, and the raw rows come
back; segment bookkeeping (ids, positions, cu_seqlens, shifted decoder inputs) and fill rate
are checked against the arrays themselves."""

from __future__ import annotations

import numpy as np
import pytest
import ul2
from ul2 import testing

EOS, PAD = 1, 0
SENTINELS = ul2.Sentinels.t5(1000, 100)  # ids 999 .. 900
SENTINEL_IDS = SENTINELS.ids.tolist()
TOKEN_HIGH = 800  # raw ids in [0, 800): 0 (= pad id) and 1 (= EOS id) occur inside rows
ENC_DEC = ("hf", "seqio")
DEC = ("decoder", "seqio_decoder")


# ---------------------------------------------------------------------------------------------
# The seqio vectors


def test_seqio_prefix_lm_decoder_only_vector():
    """Reference §7.4: inputs [9,4,6,1], targets [3,9,1] as one decoder-only sequence of 9."""
    key = next(k for k in range(10_000) if ul2.prefix_split(5, 0.5, seed=0, key=k) == 3)
    c = ul2.Collator(ul2.PrefixLM(0.5), sentinels=SENTINELS, sequence_length=9, format="seqio_decoder")
    out = c(np.array([[9, 4, 6, 3, 9]], np.int32), keys=[key])
    assert out["decoder_target_tokens"].tolist() == [[9, 4, 6, 1, 3, 9, 1, 0, 0]]
    assert out["decoder_causal_attention"].tolist() == [[1, 1, 1, 1, 1, 0, 0, 0, 0]]
    assert out["decoder_loss_weights"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 0, 0]]
    assert out["decoder_input_tokens"].tolist() == [[0, 9, 4, 6, 1, 3, 9, 1, 0]]
    # The same example in the "decoder" format.
    d = ul2.Collator(
        ul2.PrefixLM(0.5), sentinels=SENTINELS, sequence_length=9, format="decoder", bidirectional_mask=True
    )(np.array([[9, 4, 6, 3, 9]], np.int32), keys=[key])
    assert d["input_ids"].tolist() == [[9, 4, 6, 1, 3, 9, 1, 0, 0]]
    assert d["prefix_lengths"].tolist() == [4]
    assert d["labels"].tolist() == [[-100] * 4 + [3, 9, 1] + [-100] * 2]
    assert d["bidirectional_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0, 0, 0]]
    assert d["attention_mask"].tolist() == [[1] * 7 + [0] * 2]


def keys_for(collator_kw: dict, mixture: ul2.Mixture, rows: list[np.ndarray], wanted: list[int]) -> list[int]:
    """Keys that give row i the denoiser ``wanted[i]``, found with a non-packed collator (a
    CausalLM's inputs are its prompt + EOS, so the first input id tells the denoiser)."""
    plain = ul2.Collator(mixture, sentinels=SENTINELS, format="seqio", **collator_kw)
    first = [d.prefix[0] for d in mixture.denoisers]
    keys: list[int] = []
    for row, j in zip(rows, wanted, strict=True):
        key = next(
            k
            for k in range(len(keys), 1000)
            if k not in keys and plain([row], keys=[k])["encoder_input_tokens"][0, 0] == first[j]
        )
        keys.append(key)
    return keys


def test_seqio_packing_vector():
    """Reference §8 (trim_and_pack_dataset docstring)."""
    mixture = ul2.Mixture([(ul2.CausalLM(prefix=(8, 7)), 1.0), (ul2.CausalLM(prefix=(2, 3, 4)), 1.0)])
    rows = [np.array([4], np.int32), np.array([5, 6], np.int32)]
    kw = dict(inputs_length=10, targets_length=7)
    keys = keys_for(kw, mixture, rows, [0, 1])
    c = ul2.Collator(mixture, sentinels=SENTINELS, format="seqio", pack=True, **kw)
    out = c(rows, keys=keys)
    assert out["encoder_input_tokens"].tolist() == [[8, 7, 1, 2, 3, 4, 1, 0, 0, 0]]
    assert out["encoder_segment_ids"].tolist() == [[1, 1, 1, 2, 2, 2, 2, 0, 0, 0]]
    assert out["encoder_positions"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 0, 0, 0]]
    assert out["decoder_target_tokens"].tolist() == [[4, 1, 5, 6, 1, 0, 0]]
    assert out["decoder_segment_ids"].tolist() == [[1, 1, 2, 2, 2, 0, 0]]
    assert out["decoder_positions"].tolist() == [[0, 1, 0, 1, 2, 0, 0]]
    assert out["decoder_input_tokens"].tolist() == [[0, 4, 0, 5, 6, 0, 0]]
    assert out["decoder_loss_weights"].tolist() == [[1, 1, 1, 1, 1, 0, 0]]
    assert c.fill_rate == pytest.approx((7 + 5) / (10 + 7))


def test_seqio_enc_dec_converter_vector():
    """Reference §8, EncDecFeatureConverter docstring: decoder inputs restart with 0 per segment."""
    mixture = ul2.Mixture([(ul2.CausalLM(prefix=(7, 8, 5)), 1.0), (ul2.CausalLM(prefix=(8, 4, 9, 3)), 1.0)])
    rows = [np.array([3, 9], np.int32), np.array([4], np.int32)]
    kw = dict(inputs_length=10, targets_length=7)
    keys = keys_for(kw, mixture, rows, [0, 1])
    out = ul2.Collator(mixture, sentinels=SENTINELS, format="seqio", pack=True, **kw)(rows, keys=keys)
    assert out["encoder_input_tokens"].tolist() == [[7, 8, 5, 1, 8, 4, 9, 3, 1, 0]]
    assert out["decoder_target_tokens"].tolist() == [[3, 9, 1, 4, 1, 0, 0]]
    assert out["decoder_input_tokens"].tolist() == [[0, 3, 9, 0, 4, 0, 0]]
    assert out["encoder_segment_ids"].tolist() == [[1, 1, 1, 1, 2, 2, 2, 2, 2, 0]]
    assert out["decoder_segment_ids"].tolist() == [[1, 1, 1, 2, 2, 0, 0]]


# ---------------------------------------------------------------------------------------------
# Reading examples back from the arrays


def leading_ones(mask: np.ndarray) -> int:
    """Length of the run of ones at the start of a 0/1 vector, which must be all there is."""
    n = int(mask.sum())
    assert mask[:n].tolist() == [1] * n and not mask[n:].any(), mask.tolist()
    return n


def segments_of(seg: np.ndarray, pos: np.ndarray) -> list[np.ndarray]:
    """Index arrays of segments 1, 2, ... of one packed row; checks numbering and positions."""
    n = int(seg.max())
    out = []
    for s in range(1, n + 1):
        idx = np.flatnonzero(seg == s)
        assert idx.size > 0, f"segment {s} of {seg.tolist()} is empty"
        assert np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)), "segment not contiguous"
        assert pos[idx].tolist() == list(range(idx.size)), "positions must restart at 0 per segment"
        out.append(idx)
    used = int((seg != 0).sum())
    # Segments in increasing order from the row start, padding (segment 0, position 0) after them.
    assert seg[:used].tolist() == sorted(seg[:used].tolist()) and (seg[:used] > 0).all()
    assert not seg[used:].any() and not pos[used:].any()
    return out


def expected_cu_seqlens(seg: np.ndarray) -> list[int]:
    rows, width = seg.shape
    cu = [0]
    for r in range(rows):
        for s in range(1, int(seg[r].max()) + 1):
            cu.append(r * width + int(np.flatnonzero(seg[r] == s)[-1]) + 1)
        if (seg[r] == 0).any():
            cu.append((r + 1) * width)
    return cu


def check_shifted(dec_in: np.ndarray, targets: np.ndarray, start: int) -> None:
    """Decoder inputs of one segment: the start token, then the targets shifted right by one."""
    assert dec_in.tolist() == [start, *targets[:-1].tolist()]


Example = tuple[list, list]


def read_examples(out: dict[str, np.ndarray], fmt: str, packed: bool) -> tuple[list[Example], float]:
    """Every example of a batch in order, as (inputs, targets) with prompt and EOS, and the
    fraction of non-padding output positions."""
    examples: list[Example] = []
    if fmt == "hf":
        ids, labels, dec_in = out["input_ids"], out["labels"], out["decoder_input_ids"]
        enc_used = dec_used = 0
        for r in range(ids.shape[0]):
            if packed:
                enc = segments_of(out["segment_ids"][r], out["positions"][r])
                dec = segments_of(out["decoder_segment_ids"][r], out["decoder_positions"][r])
                assert out["attention_mask"][r].tolist() == (out["segment_ids"][r] != 0).astype(int).tolist()
                assert (
                    out["decoder_attention_mask"][r].tolist()
                    == (out["decoder_segment_ids"][r] != 0).astype(int).tolist()
                )
            else:
                enc = [np.arange(leading_ones(out["attention_mask"][r]))]
                dec = [np.arange(leading_ones(out["decoder_attention_mask"][r]))]
            assert len(enc) == len(dec), "encoder segment k and decoder segment k pair up"
            for e, d in zip(enc, dec, strict=True):
                t = labels[r, d]
                assert (t != -100).all()
                check_shifted(dec_in[r, d], t, PAD)
                examples.append((ids[r, e].tolist(), t.tolist()))
            n_enc, n_dec = sum(e.size for e in enc), sum(d.size for d in dec)
            assert (ids[r, n_enc:] == PAD).all() and (labels[r, n_dec:] == -100).all()
            if packed:
                assert (dec_in[r, n_dec:] == PAD).all()
            else:
                # Unpacked: the whole row shifted right, as HF's shift_tokens_right does.
                check_shifted(dec_in[r], np.where(labels[r] == -100, PAD, labels[r]), PAD)
            enc_used += n_enc
            dec_used += n_dec
        if packed:
            assert out["cu_seqlens"].tolist() == expected_cu_seqlens(out["segment_ids"])
            assert out["decoder_cu_seqlens"].tolist() == expected_cu_seqlens(out["decoder_segment_ids"])
            assert out["cu_seqlens"][-1] == ids.size and out["decoder_cu_seqlens"][-1] == labels.size
        return examples, (enc_used + dec_used) / (ids.size + labels.size)
    if fmt == "seqio":
        enc_tok, tgt, dec_in, lw = (
            out[k]
            for k in (
                "encoder_input_tokens",
                "decoder_target_tokens",
                "decoder_input_tokens",
                "decoder_loss_weights",
            )
        )
        enc_used = dec_used = 0
        for r in range(enc_tok.shape[0]):
            if packed:
                enc = segments_of(out["encoder_segment_ids"][r], out["encoder_positions"][r])
                dec = segments_of(out["decoder_segment_ids"][r], out["decoder_positions"][r])
                assert lw[r].tolist() == (out["decoder_segment_ids"][r] != 0).astype(int).tolist()
            else:
                # No mask in seqio's unpacked format: inputs end with EOS, a non-zero id.
                nz = np.flatnonzero(enc_tok[r])
                enc = [np.arange(nz[-1] + 1)]
                dec = [np.arange(leading_ones(lw[r]))]
            assert len(enc) == len(dec)
            for e, d in zip(enc, dec, strict=True):
                check_shifted(dec_in[r, d], tgt[r, d], 0)
                examples.append((enc_tok[r, e].tolist(), tgt[r, d].tolist()))
            n_enc, n_dec = sum(e.size for e in enc), sum(d.size for d in dec)
            assert not enc_tok[r, n_enc:].any() and not tgt[r, n_dec:].any()
            if packed:
                assert not dec_in[r, n_dec:].any()
            else:
                check_shifted(dec_in[r], tgt[r], 0)  # seqio's make_autoregressive_inputs
            enc_used += n_enc
            dec_used += n_dec
        return examples, (enc_used + dec_used) / (enc_tok.size + tgt.size)
    if fmt == "decoder":
        ids, labels = out["input_ids"], out["labels"]
        used = 0
        for r in range(ids.shape[0]):
            if packed:
                segs = segments_of(out["segment_ids"][r], out["positions"][r])
                assert out["attention_mask"][r].tolist() == (out["segment_ids"][r] != 0).astype(int).tolist()
                prefixes = [leading_ones(out["bidirectional_mask"][r, s]) for s in segs]
                assert "prefix_lengths" not in out or out["prefix_lengths"].ndim == 2
            else:
                segs = [np.arange(leading_ones(out["attention_mask"][r]))]
                prefixes = [int(out["prefix_lengths"][r])]
                if "bidirectional_mask" in out:
                    assert leading_ones(out["bidirectional_mask"][r]) == prefixes[0]
            covered = np.zeros(ids.shape[1], bool)
            for s, p in zip(segs, prefixes, strict=True):
                seq = ids[r, s]
                assert labels[r, s[:p]].tolist() == [-100] * p
                assert labels[r, s[p:]].tolist() == seq[p:].tolist()
                examples.append((seq[:p].tolist(), seq[p:].tolist()))
                covered[s] = True
            assert (ids[r, ~covered] == PAD).all() and (labels[r, ~covered] == -100).all()
            if packed:
                assert not out["bidirectional_mask"][r, ~covered].any()
            used += int(covered.sum())
        if packed:
            assert out["cu_seqlens"].tolist() == expected_cu_seqlens(out["segment_ids"])
            assert out["cu_seqlens"][-1] == ids.size
        return examples, used / ids.size
    assert fmt == "seqio_decoder"
    tgt, dec_in, lw, causal = (
        out[k]
        for k in (
            "decoder_target_tokens",
            "decoder_input_tokens",
            "decoder_loss_weights",
            "decoder_causal_attention",
        )
    )
    used = 0
    for r in range(tgt.shape[0]):
        if packed:
            segs = segments_of(out["decoder_segment_ids"][r], out["decoder_positions"][r])
        else:
            nz = np.flatnonzero(tgt[r])  # the sequence ends with EOS, a non-zero id
            segs = [np.arange(nz[-1] + 1)]
        covered = np.zeros(tgt.shape[1], bool)
        for s in segs:
            seq, w = tgt[r, s], lw[r, s]
            n_t = int(w.sum())
            p = s.size - n_t
            assert w.tolist() == [0] * p + [1] * n_t, "loss on the targets only"
            # seqio's rule: bidirectional over the inputs plus one more position.
            assert causal[r, s].tolist() == [1] * (p + 1) + [0] * (n_t - 1)
            check_shifted(dec_in[r, s], seq, 0)
            examples.append((seq[:p].tolist(), seq[p:].tolist()))
            covered[s] = True
        assert not tgt[r, ~covered].any() and not lw[r, ~covered].any() and not causal[r, ~covered].any()
        if packed:
            assert not dec_in[r, ~covered].any()
        else:
            check_shifted(dec_in[r], tgt[r], 0)
        used += int(covered.sum())
    return examples, used / tgt.size


# ---------------------------------------------------------------------------------------------
# Round trip through every format


def rt_mixture() -> ul2.Mixture:
    """Every kind of denoiser, each with a prompt whose first id (800 + index) names it."""
    return ul2.Mixture(
        [
            (ul2.SpanCorruption(3.0, 0.15, prefix=(800,)), 1.0),
            (ul2.SpanCorruption(8.0, 0.5, prefix=(801, 810)), 1.0),
            (ul2.SpanCorruption(64.0, 0.15, prefix=(802,)), 1.0),
            (ul2.SpanCorruption(3.0, 0.3, random_roll=True, prefix=(803, 811, 812)), 1.0),
            (ul2.PrefixLM(0.5, prefix=(804,)), 1.0),
            (ul2.PrefixLM(0.25, prefix=(805, 813)), 1.0),
            (ul2.CausalLM(prefix=(806,)), 1.0),
        ]
    )


BUDGETS = {
    "hf": dict(inputs_length=64, targets_length=48),
    "seqio": dict(inputs_length=64, targets_length=48),
    "decoder": dict(sequence_length=96),
    "seqio_decoder": dict(sequence_length=96),
}


def random_rows(n: int, max_len: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = [rng.integers(0, TOKEN_HIGH, rng.integers(1, max_len + 1)).astype(np.int32) for _ in range(n)]
    # Pad ids and EOS ids inside rows, at both ends, are ordinary tokens.
    rows[0] = np.array([0, 5, 0], np.int32)
    rows[1] = np.array([0], np.int32)
    rows[2] = np.array([1, 0, 0, 1, 0], np.int32)
    rows[3] = np.zeros(max_len, np.int32)
    rows[4] = np.full(max_len, 1, np.int32)
    return rows


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("fmt", ENC_DEC + DEC)
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_round_trip_every_format(fmt, packed, dtype):
    mixture = rt_mixture()
    kw = BUDGETS[fmt]
    plan = ul2.plan(mixture, sentinels=SENTINELS, **kw)
    max_len = min(r.raw_length for r in plan)
    rows = random_rows(40, max_len, seed=len(fmt) + packed)
    c = ul2.Collator(
        mixture,
        sentinels=SENTINELS,
        format=fmt,
        pack=packed,
        seed=5,
        dtype=dtype,
        bidirectional_mask=(fmt == "decoder" and not packed),
        **kw,
    )
    assert c.format == fmt
    out = c(rows, keys=list(range(100, 140)))
    assert all(a.dtype == dtype for a in out.values())
    examples, fill = read_examples(out, fmt, packed)
    assert len(examples) == len(rows), "every example appears exactly once, in order"
    used = set()
    for row, (inputs, targets) in zip(rows, examples, strict=True):
        d = mixture.denoisers[inputs[0] - 800]
        testing.check_example(row, inputs, targets, d, sentinels=SENTINELS, eos_id=EOS)
        used.add(inputs[0] - 800)
    assert len(used) >= 5  # the batch exercises most denoisers
    assert 0 < c.fill_rate <= 1
    assert c.fill_rate == pytest.approx(fill)
    width = out[
        "input_ids"
        if fmt in ("hf", "decoder")
        else ("encoder_input_tokens" if fmt == "seqio" else "decoder_target_tokens")
    ].shape
    if packed:
        assert width[0] < len(rows), "packing puts several examples in a row"
    else:
        assert width[0] == len(rows)
    # Packed and padded give the same examples (packing only moves them).
    other = ul2.Collator(mixture, sentinels=SENTINELS, format=fmt, pack=not packed, seed=5, dtype=dtype, **kw)
    assert read_examples(other(rows, keys=list(range(100, 140))), fmt, not packed)[0] == examples


@pytest.mark.parametrize("fmt", ENC_DEC + DEC)
def test_packing_is_next_fit_and_never_cuts(fmt):
    """Consecutive examples fill a row until the next one does not fit; then a new row opens."""
    mixture = rt_mixture()
    kw = BUDGETS[fmt]
    plan = ul2.plan(mixture, sentinels=SENTINELS, **kw)
    rows = random_rows(60, min(r.raw_length for r in plan), seed=11)
    keys = list(range(60))
    padded = ul2.Collator(mixture, sentinels=SENTINELS, format=fmt, seed=1, **kw)
    packed = ul2.Collator(mixture, sentinels=SENTINELS, format=fmt, seed=1, pack=True, **kw)
    examples, _ = read_examples(padded(rows, keys=keys), fmt, False)
    out = packed(rows, keys=keys)
    seg_name = {
        "hf": "segment_ids",
        "seqio": "encoder_segment_ids",
        "decoder": "segment_ids",
        "seqio_decoder": "decoder_segment_ids",
    }[fmt]
    per_row = out[seg_name].max(axis=1).tolist()
    assert sum(per_row) == len(rows)
    # Simulate next-fit with the examples' lengths.
    if fmt in ENC_DEC:
        caps = (kw["inputs_length"], kw["targets_length"])
        sizes = [(len(a), len(b)) for a, b in examples]
    else:
        caps = (kw["sequence_length"],)
        sizes = [(len(a) + len(b),) for a, b in examples]
    expect, open_, count = [], [0] * len(caps), 0
    for size in sizes:
        if count and any(o + s > c for o, s, c in zip(open_, size, caps, strict=True)):
            expect.append(count)
            open_, count = [0] * len(caps), 0
        open_ = [o + s for o, s in zip(open_, size, strict=True)]
        count += 1
    expect.append(count)
    assert per_row == expect


def test_cu_seqlens_full_row_has_no_padding_segment():
    """A row filled exactly has no padding tail; cu_seqlens still ends at rows * width."""
    c = ul2.Collator(ul2.CausalLM(), sentinels=SENTINELS, sequence_length=8, pack=True)
    out = c([np.array([5, 6], np.int32), np.array([7, 8], np.int32), np.array([9], np.int32)], keys=[0, 1, 2])
    # [1, 5, 6, 1] + [1, 7, 8, 1] fills 8 exactly; [1, 9, 1] opens a new row.
    assert out["input_ids"].tolist() == [[1, 5, 6, 1, 1, 7, 8, 1], [1, 9, 1, 0, 0, 0, 0, 0]]
    assert out["segment_ids"].tolist() == [[1, 1, 1, 1, 2, 2, 2, 2], [1, 1, 1, 0, 0, 0, 0, 0]]
    assert out["cu_seqlens"].tolist() == [0, 4, 8, 11, 16]
    assert c.fill_rate == pytest.approx(11 / 16)

"""Golden parity (SPEC §6): the Python bindings give the keyed outputs pinned by the Rust
core in ``tests/data/golden.json`` (written by ``rust/ul2-core/tests/golden.rs`` with
``UL2_BLESS=1``), so Python and Rust share the RNG streams: same (seed, key), same example.

u64 values above 2**53 are stored as decimal strings; ``int()`` reads both forms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ul2

GOLDEN: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "golden.json").read_text())


def case_id(case: dict[str, Any]) -> str:
    keys = ("length", "noise_density", "mean_span_length", "random_roll", "suffix_density", "seed", "key")
    return "-".join(f"{k}={case[k]}" for k in keys if k in case)


def test_file_pins_large_seeds_as_strings() -> None:
    seeds = {int(c["seed"]) for c in GOLDEN["noise_mask"]}
    assert 2**63 + 5 in seeds
    for c in GOLDEN["noise_mask"] + GOLDEN["prefix_split"] + GOLDEN["mixture_choice"]:
        if int(c["seed"]) > 2**53:
            assert isinstance(c["seed"], str), c["seed"]


@pytest.mark.parametrize("case", GOLDEN["noise_mask"], ids=case_id)
def test_noise_mask_matches_rust(case: dict[str, Any]) -> None:
    mask = ul2.noise_mask(
        case["length"],
        case["noise_density"],
        case["mean_span_length"],
        random_roll=case["random_roll"],
        seed=int(case["seed"]),
        key=int(case["key"]),
    )
    assert mask.dtype == np.bool_
    assert mask.shape == (case["length"],)
    assert np.flatnonzero(mask).tolist() == case["noise"]


@pytest.mark.parametrize("case", GOLDEN["prefix_split"], ids=case_id)
def test_prefix_split_matches_rust(case: dict[str, Any]) -> None:
    got = ul2.prefix_split(
        case["length"], case["suffix_density"], seed=int(case["seed"]), key=int(case["key"])
    )
    assert got == case["split"]


@pytest.mark.parametrize("case", GOLDEN["mixture_choice"], ids=lambda c: f"seed={c['seed']}")
def test_denoiser_choice_matches_rust(case: dict[str, Any]) -> None:
    """A uniform mixture of causal denoisers with prompts ``[base + i]``: the first input token
    names the denoiser each key drew."""
    base, n = case["prompt_base"], case["denoisers"]
    mixture = ul2.Mixture([(ul2.CausalLM(prefix=(base + i,)), 1.0) for i in range(n)])
    collator = ul2.Collator(
        mixture, sentinels=ul2.Sentinels.t5(32128), inputs_length=8, targets_length=8, seed=int(case["seed"])
    )
    keys = np.array([int(k) for k in case["keys"]], dtype=np.int64)
    rows = np.full((len(keys), 4), 2, dtype=np.int32)
    out = collator(rows, keys=keys)
    assert (out["input_ids"][:, 0] - base).tolist() == case["choices"]
    # Same keys in another order and batch split: same choices.
    order = np.arange(len(keys))[::-1]
    first = collator(rows[order[:5]], keys=keys[order[:5]])["input_ids"][:, 0]
    rest = collator(rows[order[5:]], keys=keys[order[5:]])["input_ids"][:, 0]
    assert (np.concatenate([first, rest]) - base).tolist() == [case["choices"][i] for i in order]


def _golden_mixture(spec: list[dict[str, Any]]) -> ul2.Mixture:
    entries: list[tuple[ul2.Denoiser, float]] = []
    for item in spec:
        d = dict(item["denoiser"])
        kind = d.pop("type")
        d["prefix"] = tuple(d["prefix"])
        cls = {"SpanCorruption": ul2.SpanCorruption, "PrefixLM": ul2.PrefixLM, "CausalLM": ul2.CausalLM}[kind]
        entries.append((cls(**d), float(item["rate"])))
    return ul2.Mixture(entries)


ROWS = GOLDEN["denoise_rows"]


@pytest.mark.parametrize("case", ROWS["cases"], ids=lambda c: f"seed={c['seed']}")
@pytest.mark.parametrize("ragged", [True, False], ids=["ragged", "padded-to-list"])
def test_denoised_rows_match_rust(case: dict[str, Any], ragged: bool) -> None:
    """Whole rows (span corruption with and without roll, prefix LM, causal LM, prompts and
    EOS) through ``Collator``: same denoiser, inputs and targets as the Rust batch path."""
    collator = ul2.Collator(
        _golden_mixture(ROWS["mixture"]),
        sentinels=ul2.Sentinels.t5(ROWS["vocab_size"], ROWS["sentinel_count"]),
        inputs_length=ROWS["inputs_length"],
        targets_length=ROWS["targets_length"],
        eos_id=ROWS["eos_id"],
        pad_id=ROWS["pad_id"],
        seed=int(case["seed"]),
    )
    tokens = [np.asarray(t, dtype=np.int32 if ragged else np.int64) for t in ROWS["tokens"]]
    keys = np.array([int(r["key"]) for r in case["rows"]], dtype=np.int64)
    out = collator(tokens, keys=keys)
    for i, row in enumerate(case["rows"]):
        n_in = int(out["attention_mask"][i].sum())
        n_tg = int(out["decoder_attention_mask"][i].sum())
        assert out["input_ids"][i, :n_in].tolist() == row["inputs"], f"row {i} (key {row['key']}) inputs"
        assert out["labels"][i, :n_tg].tolist() == row["targets"], f"row {i} (key {row['key']}) targets"
        assert (out["labels"][i, n_tg:] == -100).all()
        assert (out["input_ids"][i, n_in:] == ROWS["pad_id"]).all()

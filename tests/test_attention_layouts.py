"""The attention layouts of decoder-only batches besides the dense mask: ul2.torch.block_mask's
FlexAttention BlockMask allows what attention_mask_4d allows (its mask_mod, its blocks against
create_block_mask's, flex_attention against SDPA), ul2.torch.padding_free gives what
transformers' DataCollatorWithFlattening gives, and ul2.hf.DataCollator(attention=...) gives a
Hugging Face model the outputs of the dense path; a small model's loss through the BlockMask falls."""

from __future__ import annotations

import itertools
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import ul2  # noqa: E402
import ul2.hf  # noqa: E402
import ul2.torch  # noqa: E402
from torch.nn.attention.flex_attention import (  # noqa: E402
    BlockMask,
    create_block_mask,
    create_mask,
    flex_attention,
)
from torch.utils.data import DataLoader  # noqa: E402
from ul2.sources import ByteTokenizer  # noqa: E402

TOK = ByteTokenizer()
SENTINELS = TOK.sentinels(on_overflow="cap")
MIXTURE = ul2.presets.ul2()
S = 96
BLOCK_TENSORS = (
    "kv_num_blocks",
    "kv_indices",
    "full_kv_num_blocks",
    "full_kv_indices",
    "q_num_blocks",
    "q_indices",
    "full_q_num_blocks",
    "full_q_indices",
)


def short_documents(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Documents of 8 to 40 tokens, so that a packed row holds several examples."""
    rng = np.random.default_rng(seed)
    ends = np.cumsum(rng.integers(8, 40, 300))
    tokens = rng.integers(3, 259, int(ends[-1]), dtype=np.int32)
    return tokens, np.concatenate([[0], ends[:-1]])


@pytest.fixture(scope="module")
def batches() -> dict[str, dict[str, np.ndarray]]:
    tokens, offsets = short_documents()
    out = {}
    for kind in ("packed", "unpacked"):
        ds = ul2.DenoisingDataset(
            tokens,
            MIXTURE,
            sentinels=SENTINELS,
            sequence_length=S,
            pack=kind == "packed",
            doc_offsets=offsets,
            documents="respect",
            dtype=np.int64,
        )
        out[kind] = ds.batch(range(5))
    assert (out["packed"]["segment_ids"].max(axis=1) > 1).all()  # rows of several examples
    assert (out["unpacked"]["attention_mask"] == 0).any()  # and rows with padding
    return out


def allowed(batch: dict[str, Any], bidirectional: bool = True) -> torch.Tensor:
    """The dense reference: where attention_mask_4d lets query q attend key k, [B, S, S]."""
    return ul2.torch.attention_mask_4d(batch, bidirectional=bidirectional)[:, 0] == 0


def assert_is_the_dense_mask(mask: BlockMask, batch: dict, bidirectional: bool, block_size: int) -> None:
    """The mask_mod allows what the dense mask allows, and the blocks are the ones that
    create_block_mask finds by evaluating the mask_mod everywhere."""
    b, s = batch["input_ids"].shape
    assert isinstance(mask, BlockMask) and mask.shape == (b, 1, s, s)
    pairs = create_mask(mask.mask_mod, b, 1, s, s, device="cpu")[:, 0]
    assert torch.equal(pairs, allowed(batch, bidirectional))
    ref = create_block_mask(mask.mask_mod, b, None, s, s, device="cpu", BLOCK_SIZE=block_size)
    for name in BLOCK_TENSORS:
        assert torch.equal(getattr(mask, name), getattr(ref, name)), name
    assert mask.seq_lengths == ref.seq_lengths and mask.BLOCK_SIZE == ref.BLOCK_SIZE


@pytest.mark.parametrize("block_size", [128, 16, 7, 1])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("kind", ["packed", "unpacked"])
def test_block_mask_is_the_dense_mask(batches: dict, kind: str, bidirectional: bool, block_size: int) -> None:
    batch = batches[kind]
    mask = ul2.torch.block_mask(batch, bidirectional=bidirectional, block_size=block_size)
    assert_is_the_dense_mask(mask, batch, bidirectional, block_size)


def flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: BlockMask) -> torch.Tensor:
    with warnings.catch_warnings():
        # Uncompiled FlexAttention warns that it is the unfused reference implementation.
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        out: torch.Tensor = flex_attention(q, k, v, block_mask=mask)
    return out


@pytest.mark.parametrize("block_size", [128, 16])
@pytest.mark.parametrize("kind", ["packed", "unpacked"])
def test_flex_attention_over_the_block_mask_is_sdpa_over_the_dense_mask(
    batches: dict, kind: str, block_size: int
) -> None:
    """Run by FlexAttention itself, the BlockMask's empty blocks are skipped and its full ones
    not masked, so a wrong block would show; padding queries attend nothing (0 from flex)."""
    batch = batches[kind]
    b = len(batch["input_ids"])
    q, k, v = torch.randn(3, b, 2, S, 8, generator=torch.Generator().manual_seed(0)).unbind(0)
    dense = allowed(batch)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense[:, None])
    got = flex(q, k, v, ul2.torch.block_mask(batch, block_size=block_size))
    seen = dense.any(dim=-1)
    assert torch.allclose(got.transpose(1, 2)[seen], want.transpose(1, 2)[seen], atol=1e-5)
    assert (got.transpose(1, 2)[~seen] == 0).all()


@st.composite
def layouts(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], list[list[tuple[int, int, int]]]]:
    """A small decoder-only batch, packed or not, and its examples per row as (start, length,
    prefix length): ids, labels (-100 on the prefix), padding at the end of each row."""
    s, b, packed = draw(st.integers(1, 40)), draw(st.integers(1, 3)), draw(st.booleans())
    ids = np.zeros((b, s), np.int64)
    labels = np.full((b, s), -100, np.int64)
    real, segments, prefix = (np.zeros((b, s), np.int64) for _ in range(3))
    prefix_lengths = np.zeros(b, np.int64)
    examples: list[list[tuple[int, int, int]]] = []
    for row in range(b):
        lengths = draw(st.lists(st.integers(1, s), min_size=1, max_size=5 if packed else 1))
        start, mine = 0, []
        for n in lengths:
            n = min(n, s - start)
            if n == 0:
                break
            p = draw(st.integers(0, n))
            mine.append((start, n, p))
            span = slice(start, start + n)
            ids[row, span] = np.arange(3, 3 + n) + row
            labels[row, start + p : start + n] = ids[row, start + p : start + n]
            real[row, span], segments[row, span] = 1, len(mine)
            prefix[row, start : start + p] = 1
            prefix_lengths[row] = p
            start += n
        examples.append(mine)
    batch = {"input_ids": ids, "labels": labels, "attention_mask": real}
    if packed:
        batch |= {"segment_ids": segments, "bidirectional_mask": prefix}
    else:
        batch["prefix_lengths"] = prefix_lengths
    return batch, examples


@settings(max_examples=60)
@given(layouts(), st.sampled_from([1, 2, 3, 5, 8, 13, 128]), st.booleans())
def test_block_mask_of_any_small_layout(layout: tuple, block_size: int, bidirectional: bool) -> None:
    batch, _ = layout
    mask = ul2.torch.block_mask(batch, bidirectional=bidirectional, block_size=block_size)
    assert_is_the_dense_mask(mask, batch, bidirectional, block_size)


@settings(max_examples=60)
@given(layouts())
def test_padding_free_of_any_small_layout(layout: tuple) -> None:
    batch, examples = layout
    got = ul2.torch.padding_free(batch, bidirectional=False)
    spans = [(row, start, n) for row, mine in enumerate(examples) for start, n, _ in mine]
    ids = np.concatenate([batch["input_ids"][row, start : start + n] for row, start, n in spans])
    labels = np.concatenate([batch["labels"][row, start : start + n] for row, start, n in spans])
    labels[np.cumsum([0] + [n for _, _, n in spans])[:-1]] = -100
    assert got["input_ids"].tolist() == [ids.tolist()] and got["labels"].tolist() == [labels.tolist()]
    assert got["position_ids"].tolist() == [[i for *_, n in spans for i in range(n)]]
    assert got["cu_seq_lens_q"].tolist() == np.cumsum([0] + [n for *_, n in spans]).tolist()
    assert got["max_length_q"] == got["max_length_k"] == max(n for *_, n in spans)


def example_features(batch: dict[str, np.ndarray]) -> list[dict[str, list[int]]]:
    """Each example of a ul2 batch as a feature of its own (its real tokens and labels)."""
    features = []
    for row in range(len(batch["input_ids"])):
        real = batch["attention_mask"][row] == 1
        segments = batch["segment_ids"][row][real] if "segment_ids" in batch else np.ones(real.sum())
        ids, labels = batch["input_ids"][row][real], batch["labels"][row][real]
        for seg in np.unique(segments):
            here = segments == seg
            features.append({"input_ids": ids[here].tolist(), "labels": labels[here].tolist()})
    return features


@pytest.mark.parametrize("kind", ["packed", "unpacked"])
def test_padding_free_is_data_collator_with_flattening(batches: dict, kind: str) -> None:
    batch = batches[kind]
    want = transformers.DataCollatorWithFlattening(return_flash_attn_kwargs=True)(example_features(batch))
    got = ul2.torch.padding_free(batch, bidirectional=False)
    assert set(got) == set(want)
    for name, value in want.items():
        if isinstance(value, int):
            assert type(got[name]) is int and got[name] == value, name
        else:
            assert got[name].dtype == value.dtype and torch.equal(got[name], value), name
    # ul2's examples begin with their inputs: the -100 of each first label was there already.
    real = batch["attention_mask"] == 1
    assert got["labels"].tolist() == [batch["labels"][real].tolist()]
    if kind == "packed":
        assert got["position_ids"].tolist() == [batch["positions"][real].tolist()]


def tiny_llama(attention: str) -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=TOK.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=S,
    )
    return transformers.LlamaForCausalLM._from_config(config, attn_implementation=attention).eval()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, list[int]]]:
    """A tokenised dataset's rows as a Trainer hands them to a collator."""
    tokens, offsets = short_documents(1)
    return [{"input_ids": tokens[a:z].tolist()} for a, z in itertools.pairwise(offsets[:41])]


def real_tokens(dense: dict[str, torch.Tensor]) -> torch.Tensor:
    """The real tokens of a dense collator batch: a 2-D padding mask's 1s, or the queries a 4-D
    mask lets attend themselves."""
    mask = dense["attention_mask"]
    return mask[:, 0].diagonal(dim1=1, dim2=2) == 0 if mask.ndim == 4 else mask == 1


def collate(rows: list, **options: Any) -> dict[str, Any]:
    return ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, sequence_length=S, seed=5, **options)(rows)


@pytest.mark.parametrize("pack", [True, False])
def test_a_padding_free_batch_gives_a_llama_the_dense_batchs_logits_and_loss(rows: list, pack: bool) -> None:
    """On SDPA a model finds the examples from position_ids (with use_cache=False, which the
    collator passes); FlashAttention would read cu_seq_lens_q/k."""
    model = tiny_llama("sdpa")
    dense = collate(rows, prefix_attention="causal", pack=pack)
    flat = collate(rows, prefix_attention="causal", pack=pack, attention="padding_free")
    assert flat["use_cache"] is False and flat["input_ids"].shape[0] == 1
    with torch.no_grad():
        want, got = model(**dense), model(**flat)
    real = real_tokens(dense)
    assert torch.allclose(got.logits[0], want.logits[real], atol=1e-5)
    assert torch.isclose(got.loss, want.loss)


def test_a_flex_batch_gives_a_flex_llama_the_dense_batchs_logits(rows: list) -> None:
    """A Llama loaded with attn_implementation="flex_attention" takes the collator's BlockMask as
    its attention_mask (and compiles FlexAttention: on the CPU, inference only)."""
    dense = collate(rows, pack=True)
    flexed = collate(rows, pack=True, attention="flex")
    assert isinstance(flexed["attention_mask"], BlockMask)
    assert torch.equal(flexed["position_ids"], dense["position_ids"])
    with torch.no_grad():
        want = tiny_llama("sdpa")(**dense).logits
        got = tiny_llama("flex_attention")(**flexed).logits
    real = real_tokens(dense)
    assert torch.allclose(got[real], want[real], atol=1e-5)


def test_workers_send_the_block_mask_and_one_storage_of_padding_free_rows(rows: list) -> None:
    """A BlockMask built in a DataLoader worker crosses whole; to(device) moves its mask_mod's
    tensors too (BlockMask.to alone would not). Padding-free rows cross as one storage."""
    options = dict(sentinels=SENTINELS, sequence_length=S, pack=True)
    main = ul2.hf.DataCollator(MIXTURE, attention="flex", **options)(rows[:8])["attention_mask"]
    flex = ul2.hf.DataCollator(MIXTURE, attention="flex", **options)
    sent = next(iter(DataLoader(rows[:8], batch_size=8, num_workers=1, collate_fn=flex)))["attention_mask"]
    for mask in (sent, pickle.loads(pickle.dumps(main))):
        assert type(mask) is type(main)
        for name in BLOCK_TENSORS:
            assert torch.equal(getattr(mask, name), getattr(main, name)), name
        assert all(torch.equal(a, b) for a, b in zip(mask.mask_mod.args, main.mask_mod.args, strict=True))
    moved = main.to("meta")
    assert moved.kv_indices.is_meta and all(t.is_meta for t in moved.mask_mod.args if t is not None)
    flat = ul2.hf.DataCollator(MIXTURE, attention="padding_free", prefix_attention="causal", **options)
    loader = DataLoader(rows[:8], batch_size=8, num_workers=1, collate_fn=flat)
    sent_rows = next(iter(loader))
    tensors = [t for t in sent_rows.values() if isinstance(t, torch.Tensor)]
    assert len(tensors) == 5 and len({t.untyped_storage().data_ptr() for t in tensors}) == 1
    assert {name: v for name, v in sent_rows.items() if not isinstance(v, torch.Tensor)} == {
        "max_length_q": sent_rows["max_length_k"],
        "max_length_k": sent_rows["max_length_k"],
        "use_cache": False,
    }


def test_bad_input_names_the_argument(batches: dict) -> None:
    batch = batches["packed"]
    with pytest.raises(ValueError, match=r"bidirectional=True: .*flash-attention #682"):
        ul2.torch.padding_free(batch)
    with pytest.raises(TypeError, match="bidirectional='no'"):
        ul2.torch.block_mask(batch, bidirectional="no")  # type: ignore[arg-type]
    for size in (0, 1.5, True):
        with pytest.raises(ValueError, match="block_size="):
            ul2.torch.block_mask(batch, block_size=size)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="batch: expected a dict"):
        ul2.torch.block_mask([batch])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch: no 'labels'"):
        ul2.torch.padding_free({"input_ids": batch["input_ids"]}, bidirectional=False)
    with pytest.raises(ValueError, match=r"batch\['attention_mask'\]: .*4-D mask"):
        ul2.torch.block_mask({**batch, "attention_mask": ul2.torch.attention_mask_4d(batch)})
    with pytest.raises(TypeError, match=r"batch\['segment_ids'\]: dtype torch.float32"):
        ul2.torch.block_mask({**batch, "segment_ids": batch["segment_ids"].astype(np.float32)})
    split = batch["segment_ids"].copy()
    split[2, :3] = split[2, -1]  # the last example (or the padding) also at the row's start
    with pytest.raises(ValueError, match=r"segment_ids'\]: row 2 has an example in more than one run"):
        ul2.torch.block_mask({**batch, "segment_ids": split})
    with pytest.raises(ValueError, match="needs 'bidirectional_mask' or 'prefix_lengths'"):
        ul2.torch.block_mask({n: a for n, a in batch.items() if n != "bidirectional_mask"})
    with pytest.raises(ValueError, match=r"prefix_lengths'\]: shape"):
        ul2.torch.block_mask({**batches["unpacked"], "prefix_lengths": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match="no real token"):
        ul2.torch.padding_free({**batch, "attention_mask": 0 * batch["attention_mask"]}, bidirectional=False)
    args = dict(sentinels=SENTINELS, sequence_length=S)
    with pytest.raises(ValueError, match=r"attention='padding_free': .*prefix_attention='causal'"):
        ul2.hf.DataCollator(MIXTURE, attention="padding_free", **args)
    with pytest.raises(ValueError, match="attention='sparse'"):
        ul2.hf.DataCollator(MIXTURE, attention="sparse", **args)
    with pytest.raises(ValueError, match="mask_dtype"):
        ul2.hf.DataCollator(MIXTURE, attention="flex", mask_dtype=torch.bfloat16, **args)
    with pytest.raises(ValueError, match="attention='flex': for decoder-only rows"):
        ul2.hf.DataCollator(MIXTURE, attention="flex", sentinels=SENTINELS, inputs_length=64)


def test_a_small_model_trained_with_the_block_mask_has_a_falling_loss() -> None:
    """examples/train_flex_attention.py on the CPU, UL2R and fill-in-the-middle in one mixture:
    trained through the dense mask (PyTorch
    refuses FlexAttention gradients there), evaluated through FlexAttention and the BlockMask
    as well, with the same losses, which fall, each denoiser's too; on a GPU it trains through
    FlexAttention."""
    script = Path(__file__).resolve().parent.parent / "examples" / "train_flex_attention.py"
    done = subprocess.run(
        [sys.executable, str(script), "--steps", "20", "--max-bytes", "200000", "--block-size", "32"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    evals = [
        (float(a), float(b))
        for a, b in re.findall(r"^eval step +\d+ +flex loss ([\d.]+) +dense loss ([\d.]+)", done.stdout, re.M)
    ]
    assert len(evals) == 3, done.stdout[-2000:]
    assert all(abs(a - b) < 1e-4 for a, b in evals), evals
    assert evals[-1][0] < evals[0][0] - 1.5, evals
    first, *_, last = (
        [float(m) for m in re.findall(r" \d+:([\d.]+)", line)]
        for line in done.stdout.splitlines()
        if line.startswith("eval step")
    )
    assert len(first) == len(ul2.presets.ul2r()) + 1 and all(b < a for a, b in zip(first, last, strict=True))
    assert len(re.findall(r"^step +\d+ +loss", done.stdout, re.M)) == 20

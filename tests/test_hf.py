"""ul2.hf.DataCollator: features in, tensors out, as the ul2.Collator NumPy path; and the 4-D
prefix mask really makes a Hugging Face decoder attend both ways over the prefix."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import ul2  # noqa: E402
import ul2.hf  # noqa: E402
import ul2.torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from ul2.sources import ByteTokenizer, stdlib_stream  # noqa: E402

TOK = ByteTokenizer()
SENTINELS = TOK.sentinels(on_overflow="cap")
MIXTURE = ul2.presets.ul2()


@pytest.fixture(scope="module")
def features() -> list[dict]:
    """A tokenised dataset's rows as the Trainer hands them over: dicts of Python lists."""
    tokens = stdlib_stream(TOK, max_bytes=60_000)
    width = min(r.raw_length for r in ul2.plan(MIXTURE, sentinels=SENTINELS, sequence_length=64))
    lengths = np.random.default_rng(0).integers(width // 2, width + 1, 64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return [
        {"input_ids": tokens[s : s + n].tolist(), "id": 1000 + i}
        for i, (s, n) in enumerate(zip(starts, lengths, strict=True))
    ]


def rows_of(features: list[dict]) -> list[np.ndarray]:
    return [np.asarray(f["input_ids"]) for f in features]


def as_numpy(batch: dict) -> dict:
    return {n: t.numpy() for n, t in batch.items()}


def batch_bytes(batch: dict) -> bytes:
    return b"".join(name.encode() + t.numpy().tobytes() for name, t in sorted(batch.items()))


def assert_same(batch: dict, ref: dict) -> None:
    assert set(batch) == set(ref)
    for name, a in ref.items():
        assert isinstance(batch[name], torch.Tensor)
        assert batch[name].numpy().dtype == a.dtype and batch[name].numpy().tobytes() == a.tobytes(), name


def test_encoder_decoder_batch_is_the_numpy_collators(features: list[dict]) -> None:
    collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64, seed=3)
    ref = ul2.Collator(
        MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64, seed=3, dtype=np.int64
    )
    batch = collate(features[:8])
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "labels",
        "decoder_input_ids",
        "decoder_attention_mask",
    }
    assert batch["input_ids"].dtype == torch.int64 and batch["labels"].dtype == torch.int64
    assert batch["input_ids"].shape == (8, 64) and batch["labels"].shape == (8, 64)
    assert_same(batch, ref(rows_of(features[:8]), np.arange(8)))
    # The running counter goes on: the next batch is keys 8.. (as the NumPy collator's).
    assert_same(collate(features[8:12]), ref(rows_of(features[8:12]), np.arange(8, 12)))


def test_decoder_batch_has_a_4d_bidirectional_prefix_mask(features: list[dict]) -> None:
    collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, sequence_length=64)
    ref = ul2.Collator(MIXTURE, sentinels=SENTINELS, sequence_length=64, dtype=np.int64)(
        rows_of(features[:6]), np.arange(6)
    )
    batch = collate(features[:6])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}  # no prefix_lengths: the model takes none
    assert batch["input_ids"].numpy().tobytes() == ref["input_ids"].tobytes()
    assert batch["labels"].numpy().tobytes() == ref["labels"].tobytes()
    assert batch["attention_mask"].shape == (6, 1, 64, 64) and batch["attention_mask"].dtype == torch.float32
    assert torch.equal(batch["attention_mask"], ul2.torch.attention_mask_4d(ref))
    causal = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, sequence_length=64, prefix_attention="causal")(
        features[:6]
    )
    assert (
        causal["attention_mask"].numpy().tobytes() == ref["attention_mask"].tobytes()
    )  # the 2-D padding mask
    half = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, sequence_length=64, mask_dtype=torch.bfloat16)
    assert half(features[:2])["attention_mask"].dtype == torch.bfloat16


def test_key_column_gives_stable_keys(features: list[dict]) -> None:
    collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64, key_column="id")
    ref = ul2.Collator(MIXTURE, sentinels=SENTINELS, inputs_length=64, dtype=np.int64)
    picked = [features[i] for i in (9, 2, 30)]
    assert_same(collate(picked), ref(rows_of(picked), [1009, 1002, 1030]))
    assert_same(collate(picked), as_numpy(collate(picked)))  # keys from the rows, not a counter
    with pytest.raises(KeyError, match="remove_unused_columns"):
        collate([{"input_ids": [5, 6, 7]}])


@pytest.mark.parametrize("workers", [1, 2])
def test_dataloader_workers_give_the_batches_of_one_process(features: list[dict], workers: int) -> None:
    def batches(n: int) -> list[dict]:
        collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64)
        return list(DataLoader(features[:30], batch_size=4, num_workers=n, collate_fn=collate))

    single, multi = batches(0), batches(workers)
    assert len(single) == len(multi) == 8
    for a, b in zip(single, multi, strict=True):
        assert_same(b, as_numpy(a))


def test_dataloader_workers_draw_fresh_noise_every_epoch(features: list[dict]) -> None:
    """DataLoader starts new workers (new copies of the collator) every epoch: epoch 2 must not
    replay epoch 1's noise, and the keys must not depend on timing: the same bytes run to run,
    by fork or spawn, and a first pass equal to one process's."""

    def two_epochs(workers: int, context: str | None = None) -> list[list[bytes]]:
        collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64)
        loader = DataLoader(
            features[:24],
            batch_size=4,
            num_workers=workers,
            collate_fn=collate,
            multiprocessing_context=context,
        )
        return [[batch_bytes(b) for b in loader] for _epoch in range(2)]

    single, forked = two_epochs(0), two_epochs(2, "fork")
    assert forked[0] == single[0]
    repeats = set(forked[0]) & set(forked[1])
    assert not repeats, f"{len(repeats)} of epoch 2's {len(forked[1])} batches repeat epoch 1's"
    assert len(set(forked[1])) == len(forked[1])
    assert two_epochs(2, "fork") == forked
    assert two_epochs(2, "spawn") == forked


def test_fixed_length_rows_longer_than_a_raw_length_are_cut_and_counted() -> None:
    """HF's group_texts / nanoT5 rows of 568 tokens through ul2(): the S-denoiser's raw length at
    512 is 511, so those rows raised on the first batch that drew it; they are cut (and
    warned about once), or refused with long_rows="error"."""
    rows = [{"input_ids": np.arange(3, 3 + 568) % 250 + 3} for _ in range(32)]
    c = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=512, targets_length=512)
    with pytest.warns(UserWarning, match="were cut"):
        batch = c(rows)
    assert batch["input_ids"].shape[0] == 32
    assert c.collator.stats["cut_tokens"] > 0 and c.collator.stats["rows"] == 32
    strict = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=512, long_rows="error")
    with pytest.raises(ValueError, match=r"raw_length=511.*long_rows='cut'"):
        strict(rows)


def test_rows_may_be_arrays_or_tensors(features: list[dict]) -> None:
    collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64, key_column="id")
    as_lists = collate(features[:3])
    as_tensors = collate([{"input_ids": torch.tensor(f["input_ids"]), "id": f["id"]} for f in features[:3]])
    as_int32 = collate(
        [{"input_ids": np.asarray(f["input_ids"], np.int32), "id": f["id"]} for f in features[:3]]
    )
    for other in (as_tensors, as_int32):
        assert_same(other, as_numpy(as_lists))


def test_errors_name_the_argument(features: list[dict]) -> None:
    with pytest.raises(ValueError, match="format='seqio'"):
        ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64, format="seqio")
    with pytest.raises(ValueError, match="prefix_attention"):
        ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, sequence_length=64, prefix_attention="full")
    collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64, input_column="tokens")
    with pytest.raises(KeyError, match="features\\[0\\]: no column 'tokens'"):
        collate(features[:2])
    with pytest.raises(TypeError, match="features"):
        collate([])


def tiny_llama() -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=TOK.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(config).eval()


def test_a_llama_attends_both_ways_over_the_prefix_only(features: list[dict]) -> None:
    """Changing a later prefix token changes an earlier prefix position's output under the 4-D
    mask (bidirectional), never under the causal one; changing a target token never does."""
    model = tiny_llama()
    collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, sequence_length=64, key_column="id")
    feature = next(
        f
        for f in features
        if int(
            ul2.Collator(MIXTURE, sentinels=SENTINELS, sequence_length=64)(
                [np.asarray(f["input_ids"])], [f["id"]]
            )["prefix_lengths"][0]
        )
        >= 8
    )
    batch = collate([feature])
    ref = ul2.Collator(MIXTURE, sentinels=SENTINELS, sequence_length=64, dtype=np.int64)(
        [np.asarray(feature["input_ids"])], [feature["id"]]
    )
    p = int(ref["prefix_lengths"][0])

    def logits(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).logits[0]

    ids = batch["input_ids"]
    prefix_change, target_change = ids.clone(), ids.clone()
    prefix_change[0, p - 2] = (prefix_change[0, p - 2] + 1) % 200 + 3  # a later prefix token
    target_change[0, p + 1] = (target_change[0, p + 1] + 1) % 200 + 3  # a target token
    bidi = batch["attention_mask"]
    causal = ul2.torch.attention_mask_4d(ref, bidirectional=False)
    base_bidi, base_causal = logits(ids, bidi), logits(ids, causal)
    assert not torch.allclose(logits(prefix_change, bidi)[0], base_bidi[0])  # position 0 sees position p-2
    assert torch.allclose(logits(prefix_change, causal)[0], base_causal[0])
    assert torch.allclose(logits(target_change, bidi)[: p + 1], base_bidi[: p + 1])  # nothing before sees it


def test_trainer_trains_t5_and_a_causal_lm_with_the_collator(features: list[dict], tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("accelerate")
    datasets = pytest.importorskip("datasets")
    train = datasets.Dataset.from_dict({"input_ids": [f["input_ids"] for f in features]})
    t5 = transformers.T5ForConditionalGeneration(
        transformers.T5Config(
            vocab_size=TOK.vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=1,
            num_heads=4,
            dropout_rate=0.0,
            decoder_start_token_id=0,
        )
    )
    runs = [
        (t5, ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64)),
        (tiny_llama().train(), ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, sequence_length=64)),
    ]
    for i, (model, collator) in enumerate(runs):
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / str(i)),
            max_steps=4,
            per_device_train_batch_size=4,
            learning_rate=1e-3,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = transformers.Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
        trainer.train()
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        assert len(losses) == 4 and all(np.isfinite(losses))


def test_int32_outputs_keep_int64_labels_and_list_rows_are_the_arrays_bytes(features: list[dict]) -> None:
    """dtype=int32 halves ids and masks; labels stay int64 for cross_entropy. Lists of ints (read
    in one pass), NumPy rows and tensors give the same bytes."""
    collate = ul2.hf.DataCollator(
        MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64, key_column="id", dtype=np.int32
    )
    ref = ul2.Collator(MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64, dtype=np.int32)(
        rows_of(features[:8]), [f["id"] for f in features[:8]]
    )
    batch = collate(features[:8])
    assert batch["labels"].dtype == torch.int64 and batch["input_ids"].dtype == torch.int32
    assert_same(batch, {**ref, "labels": ref["labels"].astype(np.int64)})
    loss = torch.nn.functional.cross_entropy(torch.zeros(8 * 64, TOK.vocab_size), batch["labels"].reshape(-1))
    assert torch.isfinite(loss)
    mixed = [
        {**f, "input_ids": np.asarray(f["input_ids"])} if i % 2 else f for i, f in enumerate(features[:8])
    ]
    assert_same(collate(mixed), as_numpy(batch))


def test_dataloader_workers_send_one_storage_per_batch(features: list[dict]) -> None:
    collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64, dtype=np.int32)
    single = list(DataLoader(features[:16], batch_size=4, collate_fn=collate))
    collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64, dtype=np.int32)
    for ref, batch in zip(
        single, DataLoader(features[:16], batch_size=4, num_workers=2, collate_fn=collate), strict=True
    ):
        assert len({t.untyped_storage().data_ptr() for t in batch.values()}) == 1
        assert_same(batch, as_numpy(ref))


def test_fields_give_a_t5_only_the_tensors_it_reads(features: list[dict]) -> None:
    """T5 builds decoder_input_ids from labels: with fields= the collator never computes it."""
    lean = ("input_ids", "attention_mask", "labels")
    collate = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64, seed=3, fields=lean)
    full = ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, inputs_length=64, seed=3)(features[:8])
    batch = collate(features[:8])
    assert list(batch) == list(lean)
    assert_same(batch, {name: full[name].numpy() for name in lean})
    t5 = transformers.T5ForConditionalGeneration(
        transformers.T5Config(
            vocab_size=TOK.vocab_size,
            d_model=16,
            d_ff=32,
            d_kv=8,
            num_layers=1,
            num_heads=2,
            decoder_start_token_id=0,
        )
    ).eval()
    with torch.no_grad():
        assert torch.equal(
            t5(**batch).logits, t5(**{n: full[n] for n in (*lean, "decoder_input_ids")}).logits
        )
    with pytest.raises(ValueError, match=r"fields=.*format='hf'"):
        ul2.hf.DataCollator(MIXTURE, sentinels=SENTINELS, sequence_length=64, fields=("input_ids",))
    with pytest.raises(ValueError, match=r"fields=.*'segment_ids' is no keyword"):
        ul2.hf.DataCollator(
            MIXTURE, sentinels=SENTINELS, inputs_length=64, pack=True, fields=("segment_ids",)
        )

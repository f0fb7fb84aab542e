"""ul2.jax: a host's batch as global jax.Arrays on a mesh, and the decoder-only attention mask
built in JAX; a grain checkpoint restored mid-epoch feeds the uninterrupted global batches; the
JAX training example trains (loss falls) and its two-device run sees one device's batches.

What starts JAX's backend runs in a fresh process (the ``check_*`` functions, through
:func:`in_a_fresh_process`): once started, JAX warns of a deadlock at every fork, rightly, and
later tests in pytest's process fork (torch's ``DataLoader`` workers, Ray)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
grain = pytest.importorskip("grain")

import ul2  # noqa: E402
import ul2.grain  # noqa: E402
import ul2.jax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402
from ul2.sources import ByteTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOK = ByteTokenizer()
MIXTURE = ul2.presets.ul2(prompts=TOK.encode)
SENTINELS = TOK.sentinels(on_overflow="cap")


def rows_sharding() -> NamedSharding:
    return NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))


def documents(n: int, longest: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 250, size=k).astype(np.int32) for k in rng.integers(1, longest, size=n)]


def packed_batches(docs: list[np.ndarray], **options: Any) -> list[dict[str, np.ndarray]]:
    stream = ul2.DenoisingStream(
        iter(docs), MIXTURE, sentinels=SENTINELS, pack=True, documents_mode="respect", **options
    )
    return list(stream)


def per_row(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {n: a for n, a in batch.items() if n != "cu_seqlens"}


def check_global_batch_is_the_host_batch_laid_out_by_the_sharding() -> None:
    batch = per_row(packed_batches(documents(20, 60), sequence_length=64, batch_size=4)[0])
    sharding = rows_sharding()
    arrays = ul2.jax.global_batch(batch, sharding)
    assert list(arrays) == list(batch)
    for name, a in arrays.items():
        assert isinstance(a, jax.Array) and a.sharding == sharding, name
        assert a.dtype == np.int32 and a.shape == batch[name].shape, name
        assert np.array_equal(np.asarray(a), batch[name]), name


def check_global_batch_bad_input_names_the_argument() -> None:
    batch = packed_batches(documents(20, 60), sequence_length=64, batch_size=4)[0]
    sharding = rows_sharding()
    with pytest.raises(TypeError, match=r"sharding: expected a jax\.sharding\.Sharding .*, got str"):
        ul2.jax.global_batch(per_row(batch), "data")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="batch: expected a dict of arrays, got list"):
        ul2.jax.global_batch([batch["input_ids"]], sharding)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch: no fields"):
        ul2.jax.global_batch({}, sharding)
    with pytest.raises(ValueError, match=r"batch\['cu_seqlens'\]: a batch-level field"):
        ul2.jax.global_batch(batch, sharding)
    with pytest.raises(ValueError, match=r"batch\['labels'\]: 3 rows, but batch\['input_ids'\] has 4"):
        ul2.jax.global_batch({"input_ids": batch["input_ids"], "labels": batch["labels"][:3]}, sharding)
    with pytest.raises(ValueError, match=r"batch\['step'\]: a scalar"):
        ul2.jax.global_batch({"input_ids": batch["input_ids"], "step": np.int32(3)}, sharding)


def allowed_by_definition(batch: dict[str, np.ndarray], bidirectional: bool) -> np.ndarray:
    """Query q may attend key k: k real, same example, and k <= q or both in the prefix."""
    b, s = batch["input_ids"].shape
    seg = batch.get("segment_ids", np.ones((b, s), dtype=np.int32))
    if "bidirectional_mask" in batch:
        prefix = batch["bidirectional_mask"].astype(bool)
    else:
        prefix = np.arange(s)[None, :] < batch["prefix_lengths"][:, None]
    out = np.zeros((b, 1, s, s), dtype=bool)
    for r in range(b):
        for q in range(s):
            for k in range(s):
                if batch["attention_mask"][r, k] and seg[r, q] == seg[r, k]:
                    both = bidirectional and prefix[r, q] and prefix[r, k]
                    out[r, 0, q, k] = k <= q or both
    return out


def check_attention_mask_4d_is_the_segment_and_prefix_rule(pack: bool) -> None:
    # Short documents: several examples a packed row, and padding after them.
    docs = documents(40, 30, seed=2)
    stream = ul2.DenoisingStream(
        iter(docs),
        MIXTURE,
        sentinels=SENTINELS,
        sequence_length=48,
        pack=pack,
        documents_mode="respect",
        batch_size=6,
    )
    batch = per_row(next(stream))
    if pack:
        assert batch["segment_ids"].max() >= 2 and (batch["segment_ids"] == 0).any()
    else:
        assert "prefix_lengths" in batch and "segment_ids" not in batch
    jitted = jax.jit(ul2.jax.attention_mask_4d, static_argnames="bidirectional")
    arrays = ul2.jax.global_batch(batch, rows_sharding())
    for bidirectional in (True, False):
        mask = jitted(arrays, bidirectional=bidirectional)
        assert mask.dtype == bool and mask.shape == (6, 1, 48, 48)
        assert np.array_equal(np.asarray(mask), allowed_by_definition(batch, bidirectional))
    with pytest.raises(KeyError, match="needs 'bidirectional_mask' or 'prefix_lengths'"):
        ul2.jax.attention_mask_4d({"attention_mask": batch["attention_mask"]})


def check_a_grain_checkpoint_restored_mid_epoch_gives_the_uninterrupted_global_batches() -> None:
    docs = documents(60, 200, seed=4)

    def pipeline() -> grain.IterDataset:
        parent = grain.MapDataset.source(docs).shuffle(seed=3).to_iter_dataset()
        return ul2.grain.DenoiseIterDataset(
            parent,
            MIXTURE,
            sentinels=SENTINELS,
            sequence_length=64,
            pack=True,
            documents_mode="respect",
            batch_size=4,
        )

    sharding = rows_sharding()

    def global_batches(it: Any) -> list[dict[str, jax.Array]]:
        return [ul2.jax.global_batch(per_row(b), sharding) for b in it]

    want = global_batches(pipeline())
    first = iter(pipeline())
    got = global_batches(b for _, b in zip(range(5), first, strict=False))
    state = json.loads(json.dumps(first.get_state()))  # what a checkpoint stores and reads back
    resumed = iter(pipeline())
    resumed.set_state(state)
    got += global_batches(resumed)
    assert 5 < len(want) == len(got)  # stopped mid-epoch
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        assert all(np.array_equal(np.asarray(g[n]), np.asarray(w[n])) for n in w)


def run(args: list[str], devices: int, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def check_global_batch_splits_the_rows_over_two_devices() -> None:
    assert jax.device_count() == 2
    ids, denoiser = np.arange(24, dtype=np.int32).reshape(4, 6), np.array([3, 1, 0, 6], np.int32)
    arrays = ul2.jax.global_batch({"input_ids": ids, "denoiser": denoiser}, rows_sharding())
    shards = {n: [np.asarray(s.data).tolist() for s in a.addressable_shards] for n, a in arrays.items()}
    assert shards == {"input_ids": [ids[:2].tolist(), ids[2:].tolist()], "denoiser": [[3, 1], [0, 6]]}
    with pytest.raises(ValueError, match=r"batch\['input_ids'\]: shape \(3, 6\) does not fit NamedSharding"):
        ul2.jax.global_batch({"input_ids": ids[:3]}, rows_sharding())


def in_a_fresh_process(check: Callable[..., None], *args: Any, devices: int = 1) -> None:
    """Runs ``check(*args)``, a function of this file, in a new Python process with ``devices``
    CPU devices and warnings as errors (as pytest's configuration has them)."""
    code = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('test_jax', {__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        f"module.{check.__name__}(*{args!r})\n"
    )
    run(["-W", "error", "-c", code], devices=devices)


def test_global_batch_is_the_host_batch_laid_out_by_the_sharding() -> None:
    in_a_fresh_process(check_global_batch_is_the_host_batch_laid_out_by_the_sharding)


def test_global_batch_bad_input_names_the_argument() -> None:
    in_a_fresh_process(check_global_batch_bad_input_names_the_argument)


def test_global_batch_splits_the_rows_over_two_devices() -> None:
    in_a_fresh_process(check_global_batch_splits_the_rows_over_two_devices, devices=2)


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "prefix_lengths"])
def test_attention_mask_4d_is_the_segment_and_prefix_rule(pack: bool) -> None:
    in_a_fresh_process(check_attention_mask_4d_is_the_segment_and_prefix_rule, pack)


def test_a_grain_checkpoint_restored_mid_epoch_gives_the_uninterrupted_global_batches() -> None:
    in_a_fresh_process(check_a_grain_checkpoint_restored_mid_epoch_gives_the_uninterrupted_global_batches)


STEP = re.compile(r"^step +(\d+)  loss ([\d.]+)  batch ([0-9a-f]{12})$", re.M)


@pytest.fixture(scope="module")
def two_device_run() -> str:
    return run([str(ROOT / "examples" / "train_jax.py"), "--steps", "50"], devices=2).stdout


def test_train_jax_example_loss_falls_on_two_devices(two_device_run: str) -> None:
    out = two_device_run
    assert "mesh {'data': 2} of cpu" in out
    assert "global batch (16, 128), [(8, 128), (8, 128)] per device" in out
    assert len(STEP.findall(out)) == 50
    assert len(re.findall(r"^  per denoiser( \d:[\d.]+ ){6} \d:[\d.]+$", out, re.M)) == 5
    m = re.search(r"loss first5 ([\d.]+) last5 ([\d.]+)", out)
    assert m and float(m.group(2)) < float(m.group(1)) - 1.0, out[-1500:]
    table = re.findall(r"^(\S.*? \+5 prompt) +([\d.]+) +([\d.]+)$", out, re.M)
    assert [label for label, _, _ in table] == [d.label for d in MIXTURE.denoisers]
    assert all(float(last) < float(first) for _, first, last in table), out[-1500:]  # every denoiser learns
    assert "data state: " in out and "the documents' {'next_index': " in out


def test_train_jax_example_two_devices_see_the_batches_of_one(two_device_run: str) -> None:
    one = run([str(ROOT / "examples" / "train_jax.py"), "--steps", "4"], devices=1)
    assert "mesh {'data': 1} of cpu" in one.stdout and "[(16, 128)] per device" in one.stdout
    steps_one, steps_two = STEP.findall(one.stdout), STEP.findall(two_device_run)[:4]
    assert [d for _, _, d in steps_one] == [d for _, _, d in steps_two]  # the same global batches
    # ... and the same computation: the data-parallel losses are one device's (to rounding).
    assert np.allclose([float(x) for _, x, _ in steps_one], [float(x) for _, x, _ in steps_two], atol=2e-4)


def test_importing_ul2_jax_does_not_import_jax() -> None:
    code = "import sys, ul2.jax; print('jax' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_readme_grain_and_jax_snippet_runs_without_a_warning(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup, *snippets = re.findall(
        r"```python\n(.*?)```", readme.split("\n## Integrations\n", 1)[1].split("\n## ", 1)[0], re.S
    )
    (snippet,) = [s for s in snippets if "import ul2.jax" in s]
    check = (
        "\nassert mask.shape == (8, 1, 128, 128)"
        "\nahead, again = next(it), next(restored)"
        "\nassert ahead.keys() == again.keys() and all(np.array_equal(ahead[n], again[n]) for n in ahead)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", setup + snippet + check],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stderr == ""  # no warning, not even absl's (grain's "No module named 'jax'" once)

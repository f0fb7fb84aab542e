"""loss_by_denoiser in NumPy (ul2.loss), PyTorch (ul2.torch) and JAX (ul2.jax) against a loop
over the denoisers: rows of one denoiser ([B]) and packed rows (a denoiser per token, -1 on
padding), -100 labels, a denoiser without tokens, shifted decoder-only labels; gradients; ul2's
own batches, whose overall loss is the model's; bad input named.

What starts JAX's backend runs in a fresh process (the ``check_jax_*`` functions), as in
``test_jax.py``; this module imports PyTorch only in the tests that use it, so that process
does not."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ul2
import ul2.jax
import ul2.loss
import ul2.torch
from ul2.sources import ByteTokenizer, stdlib_stream

LAYOUTS = ("rows", "packed")
NUM_DENOISERS = 4  # 1 and 3 never occur in the cases


def case(layout: str, seed: int = 0, b: int = 4, t: int = 9, vocab: int = 11) -> tuple[np.ndarray, ...]:
    """Logits, labels (-100 on about a third) and denoiser indices of one of the two layouts."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(b, t, vocab)) * 3).astype(np.float32)
    labels = rng.integers(0, vocab, (b, t))
    labels[rng.random((b, t)) < 0.3] = -100
    if layout == "rows":
        denoiser = np.resize(np.array([0, 2, -1], np.int32), b)  # a row of -1 too
    else:
        denoiser = rng.choice(np.array([0, 2], np.int32), (b, t))
        denoiser[:, -2:] = -1  # padding; its first token keeps a label, which must not count
        labels[:, -1] = -100
    return logits, labels, denoiser


def by_loop(
    logits: np.ndarray, labels: np.ndarray, denoiser: np.ndarray, n: int, shift: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Each denoiser's loss sum and token count, one denoiser at a time, in float64."""
    per_token = np.broadcast_to(denoiser[:, None], labels.shape) if denoiser.ndim == 1 else denoiser
    lg, lb, dn = logits.astype(np.float64), labels, per_token
    if shift:
        lg, lb, dn = lg[:, :-1], lb[:, 1:], dn[:, 1:]
    sums, tokens = np.zeros(n), np.zeros(n, np.int64)
    for d in range(n):
        mine = (dn == d) & (lb != -100)
        x, y = lg[mine], lb[mine]
        sums[d] = (np.log(np.exp(x).sum(axis=-1)) - x[np.arange(len(y)), y]).sum()
        tokens[d] = mine.sum()
    return sums, tokens


def by_loop_gradient(
    logits: np.ndarray, labels: np.ndarray, denoiser: np.ndarray, weights: np.ndarray, shift: bool
) -> np.ndarray:
    """d(sum over denoisers of weights[d] * loss sum d) / d logits: softmax - one-hot per token."""
    per_token = np.broadcast_to(denoiser[:, None], labels.shape) if denoiser.ndim == 1 else denoiser
    grad = np.zeros(logits.shape)
    for r in range(labels.shape[0]):
        for q in range(labels.shape[1] - shift):
            y, d = labels[r, q + shift], per_token[r, q + shift]
            if y != -100 and d >= 0:
                p = np.exp(logits[r, q].astype(np.float64))
                grad[r, q] = weights[d] * (p / p.sum() - np.eye(logits.shape[2])[y])
    return grad


def plain(a: Any) -> np.ndarray:
    """A NumPy, PyTorch (with or without a graph) or JAX array as a NumPy array."""
    return np.asarray(a.detach().float() if hasattr(a, "detach") else a)


def assert_is_the_loop(per: ul2.loss.DenoiserLoss, want: tuple[np.ndarray, np.ndarray], atol: float) -> None:
    sums, tokens = want
    assert np.issubdtype(np.asarray(per.tokens).dtype, np.integer)
    assert np.array_equal(plain(per.tokens), tokens)
    assert np.allclose(plain(per.sum), sums, atol=atol, rtol=1e-5)
    means = np.where(tokens > 0, sums / np.maximum(tokens, 1), 0.0)
    assert np.allclose(plain(per.mean), means, atol=atol, rtol=1e-5)
    assert np.isclose(plain(per.loss), sums.sum() / tokens.sum(), atol=atol, rtol=1e-5)


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch")


@pytest.mark.parametrize("shift", [False, True], ids=["aligned", "shift"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_numpy_is_the_loop(layout: str, shift: bool) -> None:
    logits, labels, denoiser = case(layout)
    per = ul2.loss.loss_by_denoiser(logits, labels, denoiser, NUM_DENOISERS, shift=shift)
    want = by_loop(logits, labels, denoiser, NUM_DENOISERS, shift)
    assert want[1][[1, 3]].tolist() == [0, 0] and want[1][[0, 2]].min() > 0
    assert_is_the_loop(per, want, atol=1e-9)


@pytest.mark.parametrize("shift", [False, True], ids=["aligned", "shift"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_torch_is_the_loop_and_its_gradient_too(torch: Any, layout: str, shift: bool) -> None:
    logits, labels, denoiser = case(layout, seed=1)
    x = torch.from_numpy(logits).requires_grad_()
    per = ul2.torch.loss_by_denoiser(
        x, torch.from_numpy(labels), torch.from_numpy(denoiser), NUM_DENOISERS, shift=shift
    )
    assert per.sum.dtype == torch.float32 and per.tokens.dtype == torch.int64
    assert_is_the_loop(per, by_loop(logits, labels, denoiser, NUM_DENOISERS, shift), atol=1e-4)
    weights = np.array([0.5, 3.0, -2.0, 7.0])
    (per.sum * torch.from_numpy(weights).float()).sum().backward()
    want = by_loop_gradient(logits, labels, denoiser, weights, shift)
    assert np.allclose(x.grad.numpy(), want, atol=1e-5)


def test_torch_half_precision_logits_sum_in_float32(torch: Any) -> None:
    logits, labels, denoiser = case("packed", seed=2)
    per = ul2.torch.loss_by_denoiser(torch.from_numpy(logits).bfloat16(), labels, denoiser, NUM_DENOISERS)
    assert per.sum.dtype == torch.float32 and per.mean.dtype == torch.float32
    assert_is_the_loop(per, by_loop(logits, labels, denoiser, NUM_DENOISERS), atol=0.3)


def test_sums_and_tokens_add_up_over_batches() -> None:
    # What an all-reduce over ranks (or a sum over steps) relies on.
    parts = [case("packed", seed=s) for s in (3, 4)]
    whole = ul2.loss.loss_by_denoiser(*(np.concatenate(a) for a in zip(*parts, strict=True)), NUM_DENOISERS)
    split = [ul2.loss.loss_by_denoiser(*p, NUM_DENOISERS) for p in parts]
    added = ul2.loss.DenoiserLoss(split[0].sum + split[1].sum, split[0].tokens + split[1].tokens)
    assert np.array_equal(added.tokens, whole.tokens)
    assert np.allclose(added.sum, whole.sum) and np.allclose(added.mean, whole.mean)
    assert np.isclose(added.loss, whole.loss)


def test_no_tokens_at_all_is_a_loss_of_zero(torch: Any) -> None:
    logits, labels, denoiser = case("rows")
    x = torch.from_numpy(logits).requires_grad_()
    per = ul2.torch.loss_by_denoiser(x, np.full_like(labels, -100), denoiser, NUM_DENOISERS)
    assert per.tokens.tolist() == [0] * 4 and per.mean.tolist() == [0.0] * 4 and per.loss.item() == 0.0
    per.loss.backward()
    assert not x.grad.any()


TOK = ByteTokenizer()
BUDGETS = {
    "hf": {"inputs_length": 48, "targets_length": 48},
    "decoder": {"sequence_length": 64},
}


@pytest.mark.parametrize("pack", [False, True], ids=["rows", "packed"])
@pytest.mark.parametrize("form", list(BUDGETS))
def test_on_ul2_batches_the_overall_loss_is_the_models(torch: Any, form: str, pack: bool) -> None:
    mixture = ul2.presets.ul2(prompts=TOK.encode)
    ds = ul2.DenoisingDataset(
        stdlib_stream(TOK, max_bytes=20_000),
        mixture,
        sentinels=TOK.sentinels(on_overflow="cap"),
        pack=pack,
        seed=5,
        **BUDGETS[form],
    )
    batch = ds.batch(np.arange(12))
    assert batch["denoiser"].ndim == (2 if pack else 1)
    labels, denoiser = batch["labels"], batch["denoiser"]
    logits = np.random.default_rng(0).normal(size=(*labels.shape, TOK.vocab_size)).astype(np.float32)
    shift = form == "decoder"
    per = ul2.torch.loss_by_denoiser(torch.from_numpy(logits), labels, denoiser, len(mixture), shift=shift)
    assert_is_the_loop(per, by_loop(logits, labels, denoiser, len(mixture), shift), atol=1e-3)
    # A Hugging Face model's loss: seq2seq as it is, causal LMs shifting the labels themselves.
    x, y = torch.from_numpy(logits), torch.from_numpy(labels).long()
    if shift:
        x, y = x[:, :-1], y[:, 1:]
    model_loss = torch.nn.functional.cross_entropy(x.reshape(-1, TOK.vocab_size), y.reshape(-1))
    assert torch.isclose(per.loss, model_loss)


def bad_inputs(module: Any, array: Callable[[Any], Any]) -> list[tuple[Callable[[], Any], type, str]]:
    """Calls that must fail, each with the exception type and a pattern its message matches."""
    lg, lb, dn = (array(a) for a in case("rows"))
    f = module.loss_by_denoiser
    return [
        (lambda: f(lg, lb[:, :5], dn, 4), ValueError, r"labels: shape \(4, 5\) does not match logits'"),
        (lambda: f(lg, lb, dn[:3], 4), ValueError, r"denoiser: shape \(3,\) is neither \[B\] \(4,\)"),
        (lambda: f(lg[0], lb, dn, 4), ValueError, r"logits: expected shape \[B, T, vocab\], got \(9, 11\)"),
        (lambda: f(lg, lb * 1.0, dn, 4), TypeError, "labels: expected an integer dtype, got .*float"),
        (lambda: f(lg, lb, dn * 1.0, 4), TypeError, "denoiser: expected an integer dtype, got .*float"),
        (lambda: f(lb, lb, dn, 4), TypeError, "logits: expected a floating dtype, got .*int"),
        (lambda: f(lg, lb, dn, 2), ValueError, "denoiser: values from -1 to 2, but .* are 0 to 1"),
        (lambda: f(lg, lb, dn - 1, 3), ValueError, "denoiser: values from -2 to 1"),
        (lambda: f(lg, lb, dn, 0), ValueError, "num_denoisers=0: must be >= 1"),
        (lambda: f(lg, lb, dn, 2.0), TypeError, "num_denoisers=2.0: must be an int"),
        (lambda: f(lg, lb + 50, dn, 4), ValueError, r"labels: a counted label is outside .*\[0, 11\)"),
    ]


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_bad_input_names_the_argument(framework: str) -> None:
    if framework == "torch":
        torch = pytest.importorskip("torch")
        cases = bad_inputs(ul2.torch, torch.from_numpy)
        not_a_tensor = np.zeros((1, 1, 2), np.float32)
        cases.append(
            (
                lambda: ul2.torch.loss_by_denoiser(not_a_tensor, [[0]], [0], 1),
                TypeError,
                "logits: expected a torch.Tensor, got ndarray",
            )
        )
    else:
        cases = bad_inputs(ul2.loss, np.asarray)
    for call, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            call()


def check_jax_loss_by_denoiser_is_the_loop() -> None:
    import jax
    import jax.numpy as jnp

    jitted = jax.jit(ul2.jax.loss_by_denoiser, static_argnums=3, static_argnames="shift")
    weights = np.array([0.5, 3.0, -2.0, 7.0])

    def weighted(x: jax.Array, labels: jax.Array, denoiser: jax.Array, shift: bool) -> jax.Array:
        per = ul2.jax.loss_by_denoiser(x, labels, denoiser, NUM_DENOISERS, shift=shift)
        return (per.sum * weights).sum()

    gradient = jax.jit(jax.grad(weighted), static_argnums=3)
    for layout in LAYOUTS:
        for shift in (False, True):
            logits, labels, denoiser = case(layout, seed=1)
            want = by_loop(logits, labels, denoiser, NUM_DENOISERS, shift)
            for f in (ul2.jax.loss_by_denoiser, jitted):
                per = f(logits, labels, denoiser, NUM_DENOISERS, shift=shift)
                assert per.sum.dtype == jnp.float32 and per.tokens.dtype == jnp.int32
                assert_is_the_loop(per, want, atol=1e-4)
            grad = gradient(logits, labels, denoiser, shift)
            assert np.allclose(grad, by_loop_gradient(logits, labels, denoiser, weights, shift), atol=1e-5)
    logits, labels, denoiser = case("packed")
    half = ul2.jax.loss_by_denoiser(jnp.asarray(logits, jnp.bfloat16), labels, denoiser, NUM_DENOISERS)
    assert half.sum.dtype == jnp.float32
    # Inside jit an index past the mixture cannot raise; segment_sum drops it.
    dropped = jitted(logits, labels, np.where(denoiser == 2, 7, denoiser), NUM_DENOISERS)
    assert_is_the_loop(dropped, by_loop(logits, labels, np.where(denoiser == 2, -1, denoiser), 4), atol=1e-4)


def check_jax_bad_input_names_the_argument() -> None:
    import jax.numpy as jnp

    for call, error, pattern in bad_inputs(ul2.jax, jnp.asarray):
        with pytest.raises(error, match=pattern):
            call()


def in_a_fresh_process(check: Callable[[], None]) -> None:
    """Runs ``check()``, a function of this file, in a new Python process on the CPU, with
    warnings as errors (as pytest's configuration has them)."""
    code = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('test_loss', {__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        f"module.{check.__name__}()\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax (the jax extra)")


@needs_jax
def test_jax_is_the_loop_under_jit_and_its_gradient_too() -> None:
    in_a_fresh_process(check_jax_loss_by_denoiser_is_the_loop)


@needs_jax
def test_jax_bad_input_names_the_argument() -> None:
    in_a_fresh_process(check_jax_bad_input_names_the_argument)

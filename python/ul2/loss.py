"""The loss of each denoiser of a mixture, from a batch's logits, labels and ``denoiser`` field.

Every batch ul2 gives carries ``denoiser``: the mixture index of each row (shape ``[B]``), or of
each token (``[B, T]``, aligned with ``labels``, -1 on padding) when rows are packed. The token
loss split by it shows which objectives a model is learning::

    per = ul2.loss.loss_by_denoiser(logits, batch["labels"], batch["denoiser"], len(mixture))
    per.mean     # [D]: each denoiser's mean token loss (0 where it has no tokens)
    per.tokens   # [D]: its labelled tokens
    per.loss     # the batch's mean token loss over all of them

This module computes it in NumPy (a reference, or host-side evaluation); ``ul2.torch`` and
``ul2.jax`` have the same function for their tensors, differentiable, in one pass over the
logits. The result's ``sum`` and ``tokens`` add up across ranks, steps or batches: reduce both,
then ``mean`` and ``loss`` are those of everything reduced.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["DenoiserLoss", "loss_by_denoiser"]


class DenoiserLoss(NamedTuple):
    """Each denoiser's token loss, as sums that add up across batches and ranks.

    ``sum``: ``[D]``, each denoiser's summed token loss (at least float32). ``tokens``: ``[D]``
    integers, its labelled tokens. Arrays of the framework that computed them; the properties
    use only arithmetic operators, so they work on any of them, inside ``jax.jit`` too.
    """

    sum: Any
    tokens: Any

    @property
    def mean(self) -> Any:
        """``[D]``: each denoiser's mean token loss, 0 where it has no tokens."""
        # Dividing by 1 where there are no tokens gives 0 without a framework's `where`.
        return self.sum / (self.tokens + (self.tokens == 0))

    @property
    def loss(self) -> Any:
        """The mean token loss over every denoiser's tokens (a scalar; 0 with none): with
        every labelled token in a row of some denoiser, the loss a model computes from the
        same logits and labels (differentiable, so it can be the training loss)."""
        total = self.tokens.sum()
        return self.sum.sum() / (total + (total == 0))


# An argument as the checks see it: its shape, its dtype's name, and whether that dtype is of
# the kind the argument needs (floating logits, integer labels and denoiser indices).
Arg = tuple[tuple[int, ...], str, bool]


def check_arguments(logits: Arg, labels: Arg, denoiser: Arg, num_denoisers: object) -> None:
    """The checks the three frameworks share: dtype kinds, shapes and ``num_denoisers``."""
    if not isinstance(num_denoisers, (int, np.integer)) or isinstance(num_denoisers, bool):
        raise TypeError(f"num_denoisers={num_denoisers!r}: must be an int (len(mixture))")
    if num_denoisers < 1:
        raise ValueError(f"num_denoisers={num_denoisers!r}: must be >= 1 (len(mixture))")
    for name, (_, dtype, right), kind in (
        ("logits", logits, "a floating"),
        ("labels", labels, "an integer"),
        ("denoiser", denoiser, "an integer"),
    ):
        if not right:
            raise TypeError(f"{name}: expected {kind} dtype, got {dtype}")
    if len(logits[0]) != 3:
        raise ValueError(f"logits: expected shape [B, T, vocab], got {logits[0]}")
    if labels[0] != logits[0][:2]:
        raise ValueError(f"labels: shape {labels[0]} does not match logits' [B, T] {logits[0][:2]}")
    if denoiser[0] not in (labels[0][:1], labels[0]):
        raise ValueError(
            f"denoiser: shape {denoiser[0]} is neither [B] {labels[0][:1]} (one per row) nor labels' "
            f"[B, T] {labels[0]} (one per token, packed rows)"
        )


def out_of_range(low: int, high: int, num_denoisers: int) -> ValueError:
    """The error of a ``denoiser`` index outside ``[-1, num_denoisers)``."""
    return ValueError(
        f"denoiser: values from {low} to {high}, but the mixture indices of num_denoisers={num_denoisers} "
        f"denoisers are 0 to {num_denoisers - 1} (and -1 on padding)"
    )


def loss_by_denoiser(
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    denoiser: npt.ArrayLike,
    num_denoisers: int,
    *,
    ignore_index: int = -100,
    shift: bool = False,
) -> DenoiserLoss:
    """Each denoiser's token cross-entropy of ``logits`` ``[B, T, vocab]`` against ``labels``
    ``[B, T]``, split by ``denoiser`` (``[B]`` per row, or ``[B, T]`` per token, -1 on
    padding), for ``num_denoisers`` denoisers (``len(mixture)``).

    A token counts where its label is not ``ignore_index`` and its denoiser is not -1.
    ``shift=True`` is for decoder-only rows whose labels sit under their own tokens (ul2's
    ``"decoder"`` format, as Hugging Face causal LMs take them): the logits at ``t`` predict the
    label (and the per-token denoiser) at ``t + 1``. The sums are float64.
    """
    lg, lb, dn = np.asarray(logits), np.asarray(labels), np.asarray(denoiser)
    check_arguments(
        (lg.shape, str(lg.dtype), np.issubdtype(lg.dtype, np.floating)),
        (lb.shape, str(lb.dtype), np.issubdtype(lb.dtype, np.integer)),
        (dn.shape, str(dn.dtype), np.issubdtype(dn.dtype, np.integer)),
        num_denoisers,
    )
    if dn.size and (dn.min() < -1 or dn.max() >= num_denoisers):
        raise out_of_range(int(dn.min()), int(dn.max()), num_denoisers)
    lb = lb.astype(np.int64)
    dn = np.broadcast_to(dn[:, None] if dn.ndim == 1 else dn, lb.shape).astype(np.int64)
    if shift:
        # Padded, then cut: labels [B, T] again, the last one ignored (also when T is 0).
        lb = np.pad(lb, ((0, 0), (0, 1)), constant_values=ignore_index)[:, 1:]
        dn = np.pad(dn, ((0, 0), (0, 1)), constant_values=-1)[:, 1:]
    counted = (lb != ignore_index) & (dn >= 0)
    vocab = lg.shape[-1]
    if (counted & ((lb < 0) | (lb >= vocab))).any():
        raise ValueError(f"labels: a counted label is outside the vocabulary [0, {vocab}) of the logits")
    lg = lg.astype(np.float64)
    top = lg.max(axis=-1, keepdims=True)
    log_z = (top + np.log(np.exp(lg - top).sum(axis=-1, keepdims=True)))[..., 0]
    picked = np.take_along_axis(lg, np.where(counted, lb, 0)[..., None], axis=-1)[..., 0]
    return DenoiserLoss(
        np.bincount(dn[counted], weights=(log_z - picked)[counted], minlength=num_denoisers),
        np.bincount(dn[counted], minlength=num_denoisers),
    )

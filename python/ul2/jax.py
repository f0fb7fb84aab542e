"""JAX adapter: a host's NumPy batch as global ``jax.Array``s over a device mesh, and the
decoder-only attention mask built on the devices from the batch's compact fields.

Each host runs its own input pipeline (``ul2.grain``, or a ``DenoisingStream`` over its shard
of the documents) and gets its rows of the global batch; :func:`global_batch` makes global
arrays of them, each device holding its slice (``jax.make_array_from_process_local_data``)::

    mesh = jax.sharding.Mesh(jax.devices(), ("data",))
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    for batch in iterator:                          # this host's rows, NumPy
        arrays = ul2.jax.global_batch(batch, rows)  # global jax.Arrays, rows split over "data"
        params, opt_state, loss = train_step(params, opt_state, arrays)

Importing this module does not import JAX; its functions do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .collate import BATCH_FIELDS
from .loss import DenoiserLoss, check_arguments, out_of_range

if TYPE_CHECKING:
    import jax

__all__ = ["attention_mask_4d", "global_batch", "loss_by_denoiser"]


def global_batch(batch: Mapping[str, Any], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
    """This host's rows of a global batch (a dict of arrays with the rows first, as ul2's
    datasets, streams and grain adapters give them) as global ``jax.Array``s laid out by
    ``sharding``, e.g. ``NamedSharding(mesh, PartitionSpec("data"))``: the rows split over the
    mesh's ``"data"`` axis, the same for every field (1-D ``denoiser`` and ``prefix_lengths`` too).

    Every host calls it with the same fields and row count, and its rows go to its own devices;
    with one process the global batch is the host's. The rows must split evenly over the
    devices that share them. Integer fields keep their dtype (int64 becomes int32 unless
    ``jax_enable_x64`` is on; ul2's default is int32). A batch-level field (``cu_seqlens``,
    offsets into the host's flattened rows) has no rows to split, so it is refused: leave it out
    (packed rows carry ``segment_ids`` and ``positions`` per row).
    """
    import jax

    if not isinstance(sharding, jax.sharding.Sharding):
        raise TypeError(
            "sharding: expected a jax.sharding.Sharding (e.g. NamedSharding(mesh, PartitionSpec('data'))), "
            f"got {type(sharding).__name__}"
        )
    if not isinstance(batch, Mapping):
        raise TypeError(f"batch: expected a dict of arrays, got {type(batch).__name__}")
    if not batch:
        raise ValueError("batch: no fields")
    arrays = {name: np.asarray(value) for name, value in batch.items()}
    first = next(iter(arrays))
    for name, a in arrays.items():
        if name in BATCH_FIELDS:
            raise ValueError(
                f"batch[{name!r}]: a batch-level field (offsets into this host's flattened rows), "
                "not one per row; leave it out (segment_ids and positions describe packed rows)"
            )
        if a.ndim == 0:
            raise ValueError(f"batch[{name!r}]: a scalar; every field needs the batch's rows first")
        if len(a) != len(arrays[first]):
            raise ValueError(f"batch[{name!r}]: {len(a)} rows, but batch[{first!r}] has {len(arrays[first])}")
    out = {}
    for name, a in arrays.items():
        try:
            out[name] = jax.make_array_from_process_local_data(sharding, a)  # type: ignore[no-untyped-call, unused-ignore]
        except ValueError as e:
            raise ValueError(f"batch[{name!r}]: shape {a.shape} does not fit {sharding}: {e}") from None
    return out


def attention_mask_4d(batch: Mapping[str, Any], *, bidirectional: bool = True) -> jax.Array:
    """The ``[B, 1, S, S]`` boolean attention mask of a decoder-only batch (``format="decoder"``),
    built in JAX from its compact fields, so it runs inside ``jax.jit`` on the devices that
    hold the batch: ``True`` where query ``q`` may attend key ``k``, the form
    ``jax.nn.dot_product_attention(mask=...)`` takes (heads broadcast).

    ``q`` attends ``k`` when ``k`` is a real token (``attention_mask``), both are in the same
    example (``segment_ids`` of packed rows) and either ``k <= q`` (causal) or, with
    ``bidirectional``, both lie in the example's prefix (``bidirectional_mask``, as packed rows
    carry it, or the first ``prefix_lengths`` positions): the prefix-LM attention of UL2's
    decoder-only setting, as :func:`ul2.torch.attention_mask_4d` builds it. A padding query
    attends nothing; mask with a large finite negative score (as ``dot_product_attention``
    does), not ``-inf``, so its softmax stays finite.
    """
    import jax.numpy as jnp

    real = jnp.asarray(batch["attention_mask"]).astype(bool)
    s = real.shape[1]
    pos = jnp.arange(s)
    allowed = (pos[None, :] <= pos[:, None])[None] & real[:, None, :]
    same = None
    if "segment_ids" in batch:
        seg = jnp.asarray(batch["segment_ids"])
        same = seg[:, :, None] == seg[:, None, :]
        allowed &= same
    if bidirectional:
        if "bidirectional_mask" in batch:
            prefix = jnp.asarray(batch["bidirectional_mask"]).astype(bool)
        elif "prefix_lengths" in batch:
            prefix = pos[None, :] < jnp.asarray(batch["prefix_lengths"])[:, None]
        else:
            raise KeyError("batch: needs 'bidirectional_mask' or 'prefix_lengths' for a bidirectional prefix")
        both = prefix[:, :, None] & prefix[:, None, :]
        if same is not None:
            both &= same
        allowed |= both
    return allowed[:, None]


def loss_by_denoiser(
    logits: Any,
    labels: Any,
    denoiser: Any,
    num_denoisers: int,
    *,
    ignore_index: int = -100,
    shift: bool = False,
) -> DenoiserLoss:
    """Each denoiser's token cross-entropy of ``logits`` ``[B, T, vocab]`` against ``labels``
    ``[B, T]``, split by the batch's ``denoiser`` (``[B]`` per row, or ``[B, T]`` per token, -1
    on padding), for ``num_denoisers`` denoisers (``len(mixture)``, static under ``jit``): a
    :class:`ul2.loss.DenoiserLoss` of ``[D]`` arrays, ``sum`` (differentiable, at least float32)
    and ``tokens`` (int32), with ``mean`` per denoiser and ``loss`` over all of them::

        def loss_fn(params, batch):
            logits = model(params, batch)
            per = ul2.jax.loss_by_denoiser(logits, batch["labels"], batch["denoiser"], len(mixture),
                                           shift=True)   # decoder-only rows
            return per.loss, per                          # value_and_grad(loss_fn, has_aux=True)

    A token counts where its label is not ``ignore_index`` and its denoiser is not -1.
    ``shift=True`` is for decoder-only rows whose labels sit under their own tokens (ul2's
    ``"decoder"`` format): the logits at ``t`` predict the label (and the per-token denoiser) at
    ``t + 1``. Shapes and dtypes are checked always; the values of ``denoiser`` and the counted
    labels only outside ``jit`` (traced values cannot raise: inside ``jit`` a denoiser out of
    range is dropped, as ``jax.ops.segment_sum`` drops it).
    """
    import jax
    import jax.numpy as jnp

    logits, labels, denoiser = (jnp.asarray(a) for a in (logits, labels, denoiser))
    check_arguments(
        (logits.shape, str(logits.dtype), jnp.issubdtype(logits.dtype, jnp.floating)),
        (labels.shape, str(labels.dtype), jnp.issubdtype(labels.dtype, jnp.integer)),
        (denoiser.shape, str(denoiser.dtype), jnp.issubdtype(denoiser.dtype, jnp.integer)),
        num_denoisers,
    )
    concrete = not isinstance(labels, jax.core.Tracer) and not isinstance(denoiser, jax.core.Tracer)
    if concrete and denoiser.size and (denoiser.min() < -1 or denoiser.max() >= num_denoisers):
        raise out_of_range(int(denoiser.min()), int(denoiser.max()), num_denoisers)
    b, t, vocab = logits.shape
    denoiser = jnp.broadcast_to(denoiser[:, None] if denoiser.ndim == 1 else denoiser, (b, t))
    if shift:
        # Padded, then cut: labels [B, T] again, the last one ignored (also when T is 0).
        labels = jnp.pad(labels, ((0, 0), (0, 1)), constant_values=ignore_index)[:, 1:]
        denoiser = jnp.pad(denoiser, ((0, 0), (0, 1)), constant_values=-1)[:, 1:]
    counted = (labels != ignore_index) & (denoiser >= 0)
    if concrete and (counted & ((labels < 0) | (labels >= vocab))).any():
        raise ValueError(f"labels: a counted label is outside the vocabulary [0, {vocab}) of the logits")
    picked = jnp.take_along_axis(logits, jnp.where(counted, labels, 0)[..., None], axis=-1)[..., 0]
    dtype = jnp.promote_types(logits.dtype, jnp.float32)
    nll = jnp.where(counted, jax.nn.logsumexp(logits, axis=-1) - picked, 0).astype(dtype)
    # Uncounted tokens have a loss of 0, so any denoiser can take them.
    index = jnp.maximum(denoiser, 0).ravel()
    return DenoiserLoss(
        jax.ops.segment_sum(nll.ravel(), index, num_segments=num_denoisers),
        jax.ops.segment_sum(counted.ravel().astype(jnp.int32), index, num_segments=num_denoisers),
    )

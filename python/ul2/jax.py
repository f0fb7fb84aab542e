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

if TYPE_CHECKING:
    import jax

__all__ = ["attention_mask_4d", "global_batch"]


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

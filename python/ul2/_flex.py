"""The FlexAttention pieces of :func:`ul2.torch.block_mask` that need PyTorch when they are
defined: the mask's ``mask_mod`` and the ``BlockMask`` type it returns. Imported only when a
mask is built, so that ``import ul2.torch`` does not import PyTorch."""

from __future__ import annotations

import functools
from typing import cast

import torch
from torch.nn.attention.flex_attention import BlockMask


def prefix_lm(
    real: torch.Tensor,
    segments: torch.Tensor | None,
    prefix: torch.Tensor | None,
    b: torch.Tensor,
    h: torch.Tensor,
    q: torch.Tensor,
    kv: torch.Tensor,
) -> torch.Tensor:
    """Whether query ``q`` of row ``b`` attends key ``kv``: the definition of
    :func:`ul2.torch.attention_mask_4d`, one pair at a time (``real``, ``segments`` and
    ``prefix`` are ``[B, S]``; ``segments`` is ``None`` for unpacked rows, ``prefix`` for
    causal attention)."""
    seen = kv <= q
    if prefix is not None:
        seen = seen | (prefix[b, q] & prefix[b, kv])
    allowed = real[b, kv] & seen
    if segments is not None:
        allowed = allowed & (segments[b, q] == segments[b, kv])
    return allowed


class PrefixLMBlockMask(BlockMask):
    """A ``BlockMask`` whose ``to(device)`` also moves the tensors its ``mask_mod`` reads.

    ``BlockMask.to`` moves the block indices only. A mask built on the CPU (in a ``DataLoader``
    worker) and moved to the GPU with the batch, as ``Trainer`` and accelerate move every value
    that has a ``to``, would leave the kernel indexing CPU tensors. The ``mask_mod`` is a
    ``functools.partial`` of :func:`prefix_lm`, so that the mask pickles (it crosses from the
    workers) and ``torch.compile`` lifts its tensors as inputs instead of recompiling for each batch.
    """

    def to(self, device: torch.device | str) -> PrefixLMBlockMask:
        moved = super().to(device)
        mod = cast("functools.partial[torch.Tensor]", self.mask_mod)
        tensors = (None if t is None else t.to(device) for t in mod.args)
        return type(self)(
            moved.seq_lengths,
            moved.kv_num_blocks,
            moved.kv_indices,
            moved.full_kv_num_blocks,
            moved.full_kv_indices,
            moved.q_num_blocks,
            moved.q_indices,
            moved.full_q_num_blocks,
            moved.full_q_indices,
            BLOCK_SIZE=moved.BLOCK_SIZE,
            mask_mod=functools.partial(mod.func, *tensors),
        )


def block_mask(
    real: torch.Tensor, segments: torch.Tensor | None, prefix: torch.Tensor | None, block_size: int
) -> PrefixLMBlockMask:
    """The ``BlockMask`` of :func:`prefix_lm` over ``[B, S]`` rows whose examples are each one
    run of ``segments``, built from per-token counts (``[B, S, S / block_size]``), never from
    the ``[B, S, S]`` mask ``create_block_mask`` evaluates.

    Within its example ``[lo, hi)`` query ``q`` sees the real keys in ``[lo, q]`` and, when
    ``q`` is in the prefix, the real prefix keys in ``(q, hi)``. So the keys it sees in a key
    block are two differences of running sums, and a block pair is empty, full or partial as
    its sum over the query block is 0, ``block_size**2`` or between: exactly the blocks that
    ``create_block_mask`` finds (a block that sticks out past ``S`` is never full there either).
    """
    b, s = real.shape
    device = real.device
    pos = torch.arange(s, device=device)
    if segments is None:
        lo = torch.zeros(b, s, dtype=torch.long, device=device)
        hi = torch.full((b, s), s, dtype=torch.long, device=device)
    else:
        starts = torch.ones(b, s, dtype=torch.bool, device=device)
        starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
        ends = torch.ones(b, s, dtype=torch.bool, device=device)
        ends[:, :-1] = starts[:, 1:]
        lo = torch.where(starts, pos, 0).cummax(dim=1).values
        hi = torch.where(ends, pos + 1, s).flip(1).cummin(dim=1).values.flip(1)

    def running(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(x.long().cumsum(dim=1), (1, 0))

    def between(sums: torch.Tensor, start: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
        # Keys in [start, stop) for each (query, key block), from a row's running sums.
        start = start.expand(b, s, blocks).reshape(b, -1)
        stop = torch.maximum(stop.expand(b, s, blocks).reshape(b, -1), start)
        return (sums.gather(1, stop) - sums.gather(1, start)).reshape(b, s, blocks)

    blocks = -(-s // block_size)
    block_lo = (torch.arange(blocks, device=device) * block_size)[None, None, :]
    block_hi = (block_lo + block_size).clamp(max=s)
    after_q = pos[None, :, None] + 1
    lo, hi = lo[:, :, None], hi[:, :, None]
    seen = between(running(real), torch.maximum(lo, block_lo), torch.minimum(after_q, block_hi))
    if prefix is not None:
        both = between(running(real & prefix), torch.maximum(after_q, block_lo), torch.minimum(hi, block_hi))
        seen = seen + both * prefix[:, :, None]
    seen = torch.nn.functional.pad(seen, (0, 0, 0, blocks * block_size - s))
    total = seen.reshape(b, blocks, block_size, blocks).sum(dim=2)
    full = total == block_size * block_size
    partial = (total > 0) & ~full
    num_partial, partial_indices = _ordered(partial)
    num_full, full_indices = _ordered(full)
    return PrefixLMBlockMask.from_kv_blocks(
        num_partial,
        partial_indices,
        num_full,
        full_indices,
        BLOCK_SIZE=block_size,
        mask_mod=functools.partial(prefix_lm, real, segments, prefix),
        seq_lengths=(s, s),
    )


def _ordered(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Each query block's key blocks, listed first and in order, with one head dimension that
    # broadcasts over the heads (as create_block_mask lists them).
    dense = blocks.to(torch.int32)[:, None]
    indices = torch.argsort(dense, dim=-1, descending=True, stable=True)
    return dense.sum(dim=-1).to(torch.int32), indices.to(torch.int32)

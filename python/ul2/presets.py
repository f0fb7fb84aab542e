"""Standard objectives as plain ``Mixture`` values (print, copy and change them freely).

Mode prompts: ``prompts=None`` gives no prompt at all; a mapping gives each prompt string
(``"[NLU]"``, ``"[NLG]"``, ``"[S2S]"``) its token ids; a callable ``str -> list[int]``
(any tokenizer's ``encode``) encodes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from .denoisers import Denoiser, Mixture, PrefixLM, SpanCorruption

Prompts = Mapping[str, Iterable[int]] | Callable[[str], Iterable[int]] | None

R_PROMPT, X_PROMPT, S_PROMPT = "[NLU]", "[NLG]", "[S2S]"


def encode_prompt(prompts: Prompts, text: str) -> tuple[int, ...]:
    """Token ids of the mode prompt ``text`` under ``prompts`` (empty for ``None``)."""
    if prompts is None:
        return ()
    if isinstance(prompts, Mapping):
        if text not in prompts:
            raise ValueError(
                f"prompts: no token ids for {text!r}; give all of {[R_PROMPT, X_PROMPT, S_PROMPT]}"
            )
        ids = prompts[text]
    elif callable(prompts):
        ids = prompts(text)
    else:
        raise TypeError(f"prompts={prompts!r}: expected None, a mapping str -> token ids, or a callable")
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(f"prompts: {text!r} gave {ids!r}, not a sequence of int token ids")
    return tuple(ids)


def _span(mu: float, r: float, prompts: Prompts) -> SpanCorruption:
    # The released UL2 code marks X as "extreme" when spans are long or dense.
    mode = X_PROMPT if (mu >= 12 or r >= 0.3) else R_PROMPT
    return SpanCorruption(mu, r, prefix=encode_prompt(prompts, mode))


def t5() -> Mixture:
    """T5's span corruption: mean span 3, 15% noise (512 inputs -> 568 raw, 114 targets)."""
    return Mixture([(SpanCorruption(3.0, 0.15), 1.0)])


def _ul2(s_density: float, prompts: Prompts) -> Mixture:
    spans = [(3.0, 0.15), (8.0, 0.15), (3.0, 0.5), (8.0, 0.5), (64.0, 0.15), (64.0, 0.5)]
    denoisers: list[Denoiser] = [_span(mu, r, prompts) for mu, r in spans]
    denoisers.append(PrefixLM(s_density, prefix=encode_prompt(prompts, S_PROMPT)))
    return Mixture([(d, 1.0) for d in denoisers])


def ul2(prompts: Prompts = None) -> Mixture:
    """UL2 as released: R(3,.15), R(8,.15), X(3,.5), X(8,.5), X(64,.15), X(64,.5) and S (prefix LM,
    suffix density .5), uniform rates; prompts ``[NLU]`` (R), ``[NLG]`` (X), ``[S2S]`` (S)."""
    return _ul2(0.5, prompts)


def ul2_paper(prompts: Prompts = None) -> Mixture:
    """UL2 as the paper states it: ``ul2()`` with the S-denoiser's suffix density .25."""
    return _ul2(0.25, prompts)


def ul2r(prompts: Prompts = None) -> Mixture:
    """UL2R (U-PaLM continued training of decoder-only models): 50% S, 25% R(3,.15), 12.5%
    X(32,.15), 12.5% X(3,.5).

    U-PaLM (Tay et al. 2022, arXiv:2210.11399, §3.3) trains on "a mixture of three denoisers": a
    regular denoiser (mean span 3, corruption rate 15%), an extreme one ("mean span length of 32
    or a corruption rate of up to 50%"), and the prefix LM on 50% of the examples. The extreme
    denoiser is read as two, X(32,.15) and X(3,.5), as Levanter's merged UL2R does
    (marin-community/marin, ``lib/levanter/src/levanter/data/ul2r.py``, ``ul2r_configs``:
    ``r`` (.15, 3), ``x1`` (.15, 32), ``x2`` (.5, 3), ``s``). :func:`ul2r_legacy` is the mixture
    ``ul2r()`` gave before (one X(32,.5)), for runs trained with it."""
    return Mixture(
        [
            (PrefixLM(0.5, prefix=encode_prompt(prompts, S_PROMPT)), 0.5),
            (_span(3.0, 0.15, prompts), 0.25),
            (_span(32.0, 0.15, prompts), 0.125),
            (_span(3.0, 0.5, prompts), 0.125),
        ]
    )


def ul2r_legacy(prompts: Prompts = None) -> Mixture:
    """What :func:`ul2r` gave in ul2 0.1: 50% S, 25% R(3,.15), 25% X(32,.5) (U-PaLM's extreme
    denoiser read as one, with both its mean span and its corruption rate)."""
    return Mixture(
        [
            (PrefixLM(0.5, prefix=encode_prompt(prompts, S_PROMPT)), 0.5),
            (_span(3.0, 0.15, prompts), 0.25),
            (_span(32.0, 0.5, prompts), 0.25),
        ]
    )

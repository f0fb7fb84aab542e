# Hand-written stub of the native module, checked by `python -m mypy.stubtest ul2._ul2`.
from typing import Any, final

import numpy as np
import numpy.typing as npt

__version__: str

class SentinelOverflowError(ValueError): ...

@final
class Sentinels:
    @staticmethod
    def t5(
        vocab_size: int,
        count: int | None = None,
        *,
        on_overflow: str | None = None,
        check_collisions: bool | None = None,
    ) -> Sentinels: ...
    @staticmethod
    def from_ids(
        ids: Any, *, on_overflow: str | None = None, check_collisions: bool | None = None
    ) -> Sentinels: ...
    @property
    def ids(self) -> npt.NDArray[np.int64]: ...
    @property
    def count(self) -> int: ...
    @property
    def vocab_size(self) -> int | None: ...
    @property
    def on_overflow(self) -> str: ...
    @property
    def check_collisions(self) -> bool: ...
    def __len__(self) -> int: ...
    def __hash__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, tuple[Any, ...], Any]: ...

def span_counts(
    length: int, noise_density: float, mean_span_length: float | None = None
) -> tuple[int, int]: ...
def noise_mask(
    length: int,
    noise_density: float,
    mean_span_length: float | None = None,
    *,
    num_spans: int | None = None,
    random_roll: bool | None = None,
    seed: int | None = None,
    key: int | None = None,
) -> npt.NDArray[np.bool_]: ...
def apply_mask(
    tokens: Any, mask: Any, sentinels: Sentinels, *, eos_id: int | None = None
) -> tuple[npt.NDArray[np.integer[Any]], npt.NDArray[np.integer[Any]]]: ...
def prefix_split(
    length: int, suffix_density: float | None = None, *, seed: int | None = None, key: int | None = None
) -> int: ...
def plan_span_corruption(
    inputs_length: int,
    noise_density: float,
    mean_span_length: float | None = None,
    *,
    targets_length: int | None = None,
    prompt_length: int | None = None,
    eos: bool | None = None,
) -> tuple[int, int]: ...
def set_num_threads(num_threads: int | None = None) -> None: ...
def get_num_threads() -> int: ...
def _after_fork_in_child() -> None: ...
def _fail(kind: str) -> None: ...
def _validate(specs: list[tuple[str, float, float, int | None, bool, list[int], float]]) -> None: ...
def _plan(
    specs: list[tuple[str, float, float, int | None, bool, list[int], float]],
    sentinels: Sentinels,
    inputs_length: int | None = None,
    targets_length: int | None = None,
    sequence_length: int | None = None,
    eos: bool = True,
) -> list[tuple[int, int, int, int, int]]: ...

@final
class _Collator:
    def __new__(
        cls,
        specs: list[tuple[str, float, float, int | None, bool, list[int], float]],
        sentinels: Sentinels,
        inputs_length: int | None,
        targets_length: int | None,
        sequence_length: int | None,
        eos_id: int | None,
        pad_id: int,
        format: str | None,
        seed: int,
        wide: bool,
        pack: bool,
        bidirectional_mask: bool,
    ) -> _Collator: ...
    @property
    def inputs_length(self) -> int | None: ...
    @property
    def targets_length(self) -> int | None: ...
    @property
    def sequence_length(self) -> int | None: ...
    @property
    def format(self) -> str: ...
    @property
    def next_key(self) -> int: ...
    @property
    def fill_rate(self) -> float: ...
    def _set_next_key(self, key: int) -> None: ...
    def __call__(self, rows: Any, keys: Any = None) -> dict[str, npt.NDArray[Any]]: ...

@final
class _Dataset:
    def __new__(
        cls,
        tokens: Any,
        specs: list[tuple[str, float, float, int | None, bool, list[int], float]],
        sentinels: Sentinels,
        doc_offsets: Any,
        documents: str,
        inputs_length: int | None,
        targets_length: int | None,
        sequence_length: int | None,
        eos_id: int | None,
        pad_id: int,
        format: str | None,
        seed: int,
        wide: bool,
        pack: bool,
        bidirectional_mask: bool,
        separator_id: int | None,
    ) -> _Dataset: ...
    def __len__(self) -> int: ...
    @property
    def targets_length(self) -> int | None: ...
    @property
    def format(self) -> str: ...
    @property
    def num_samples(self) -> int: ...
    @property
    def index_bytes(self) -> int: ...
    @property
    def tail(self) -> int: ...
    @property
    def fill_rate(self) -> float: ...
    @property
    def raw_lengths(self) -> list[int]: ...
    @property
    def stream_length(self) -> int: ...
    def span(self, k: int) -> tuple[int, int]: ...
    def denoiser(self, k: int) -> int: ...
    def samples(self, r: int) -> tuple[int, int]: ...
    def batch(self, ids: Any) -> dict[str, npt.NDArray[Any]]: ...

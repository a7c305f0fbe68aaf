"""Type stubs for the ``picklefence._native`` extension module (the PyO3 layer)."""

import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union, final

__all__ = [
    "NativeStateWalker",
    "PanicException",
    "Policy",
    "check_predictor_nodes",
    "check_tree_nodes",
    "cli_main",
    "danger_reason",
    "native_state_classes",
    "predictor_feature_counts",
    "prescan_bytes",
    "prescan_file",
    "prefix_kind",
    "prescan_joblib_bytes",
    "prescan_joblib_file",
    "scan_bytes",
    "scan_file",
    "_panic_for_tests",
    "__version__",
]

__version__: str

# (kind, severity, offset, module, name, message, ext_code)
_Violation = Tuple[str, str, int, Optional[str], Optional[str], str, Optional[int]]

class PanicException(BaseException):
    """A Rust panic surfaced in Python (the package turns it into ``ScanError``)."""

@final
class Policy:
    """An import allowlist: which ``(module, qualified name)`` pairs a pickle may import."""

    def __new__(cls) -> Policy: ...
    @staticmethod
    def default() -> Policy: ...
    @staticmethod
    def ml_default() -> Policy: ...
    @staticmethod
    def empty() -> Policy: ...
    @staticmethod
    def named(name: str) -> Policy: ...
    @staticmethod
    def named_policies() -> List[str]: ...
    @staticmethod
    def from_toml(text: str) -> Policy: ...
    @staticmethod
    def from_toml_file(path: Union[str, os.PathLike[str]]) -> Policy: ...
    def with_allowed(self, entries: Iterable[str], *, allow_dangerous: bool = False) -> Policy: ...
    def with_allowed_ext_codes(self, codes: Iterable[int]) -> Policy: ...
    def is_allowed(self, module: str, name: str) -> bool: ...
    def is_allowed_by_name(self, module: str, name: str) -> bool: ...
    def roles(self, module: str, name: str) -> Optional[List[str]]: ...
    def entries_with_roles(self) -> List[Tuple[str, str, List[str], Optional[str]]]: ...
    def is_ext_code_allowed(self, code: int) -> bool: ...
    def entries(self) -> List[Tuple[str, str]]: ...
    @property
    def name(self) -> str: ...
    def __len__(self) -> int: ...
    def __contains__(self, entry: str, /) -> bool: ...

def prescan_bytes(
    data: bytes, policy: Policy, memo_inherited: bool = False, stream_remaining: Optional[int] = None
) -> Tuple[int, int, List[_Violation]]: ...
def prescan_file(
    file: object,
    policy: Policy,
    start: Optional[int] = None,
    memo_inherited: bool = False,
    stream_remaining: Optional[int] = None,
) -> Tuple[int, int, List[_Violation], Optional[bytes]]: ...
def prescan_joblib_bytes(
    data: bytes, policy: Policy, memo_inherited: bool = False, stream_remaining: Optional[int] = None
) -> Tuple[int, int, List[_Violation]]: ...
def prescan_joblib_file(
    file: object,
    policy: Policy,
    start: Optional[int] = None,
    memo_inherited: bool = False,
    stream_remaining: Optional[int] = None,
) -> Tuple[int, int, List[_Violation], Optional[bytes]]: ...
def prefix_kind(prefix: bytes) -> int: ...
def scan_bytes(data: bytes, policy: Policy) -> str: ...
def scan_file(path: Union[str, os.PathLike[str]], policy: Policy) -> str: ...
def danger_reason(module: str, name: str) -> Optional[str]: ...
def check_tree_nodes(
    nodes: bytes, itemsize: int, left: int, right: int, feature: int, trees: List[Tuple[int, int]]
) -> Optional[Tuple[int, int, str, int, str]]: ...
def check_predictor_nodes(
    records: bytes,
    itemsize: int,
    fields: Sequence[Tuple[int, str]],
    shapes: List[Tuple[int, int]],
    predictors: List[Any],
    bitset_rows: Callable[[Any], int],
) -> Optional[Tuple[int, int, str, int, str]]: ...
def predictor_feature_counts(predictors: List[Any], models: List[Tuple[Any, int]]) -> List[int]: ...
def native_state_classes() -> List[Tuple[str, str, str, str]]: ...

@final
class NativeStateWalker:
    """Finds the instances of the validated classes reachable from an object."""

    def __new__(
        cls,
        classes: List[Tuple[type, str]],
        atomic: List[type],
        skipped_bases: List[type],
        ndarray: Optional[type] = None,
    ) -> NativeStateWalker: ...
    def walk(self, root: Any) -> Dict[str, List[Any]]: ...

def cli_main(argv: List[str]) -> int: ...
def _panic_for_tests(message: str) -> None: ...

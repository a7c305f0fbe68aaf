"""Type stubs for the ``picklefence._native`` extension module (the PyO3 layer)."""

import os
from typing import Any, Callable, ClassVar, Dict, Iterable, List, Optional, Sequence, Tuple, Union, final

__all__ = [
    "Finding",
    "NativeStateWalker",
    "WalkedObjects",
    "PanicException",
    "Policy",
    "PrefixKind",
    "Prescan",
    "PrescanVerdict",
    "check_predictor_nodes",
    "check_tree_nodes",
    "check_trees",
    "cli_main",
    "list_files",
    "scan_bytes_rows",
    "scan_file_rows",
    "danger_reason",
    "native_state_classes",
    "predictor_feature_counts",
    "prefix_kind",
    "prescan",
    "scan_bytes",
    "scan_file",
    "convert_file",
    "_panic_for_tests",
    "__version__",
]

__version__: str

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

@final
class PrescanVerdict:
    """What a pre-scan's violations mean for the load."""

    CLEAN: ClassVar[PrescanVerdict]
    """No violation."""
    MALFORMED: ClassVar[PrescanVerdict]
    """Only ``malformed-pickle`` violations: a truncated or broken stream whose opcodes before the
    break are all allowed (CPython raises its own error there)."""
    INCOMPLETE: ClassVar[PrescanVerdict]
    """joblib: the pre-scan stopped at ``Prescan.stopped_at``, where joblib reads array data whose
    layout it cannot recover; what it analysed before was allowed (or only malformed)."""
    REFUSED: ClassVar[PrescanVerdict]
    """Any other violation: the pickle is refused."""

    def __int__(self) -> int: ...

@final
class PrefixKind:
    """How the pickle starting a file looks from its first bytes (``prefix_kind``)."""

    PAYLOAD_HEAVY: ClassVar[PrefixKind]
    """A large payload early on (array data): read it in chunks, skip payloads by seeking."""
    OPCODE_DENSE: ClassVar[PrefixKind]
    """Opcode-dense: read it whole and scan it as a buffer."""
    ENDS: ClassVar[PrefixKind]
    """It ends (STOP) within the prefix."""

    def __int__(self) -> int: ...

@final
class Finding:
    """One violation of a pre-scan (a core finding)."""

    @property
    def kind(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def module(self) -> Optional[str]: ...
    @property
    def name(self) -> Optional[str]: ...
    @property
    def message(self) -> str: ...
    @property
    def ext_code(self) -> Optional[int]:
        """The ``copyreg`` extension code the import was made by (EXT1/2/4), if it was."""

@final
class Prescan:
    """What a pre-scan found."""

    @property
    def verdict(self) -> PrescanVerdict: ...
    @property
    def consumed(self) -> int:
        """Bytes read: just past the first pickle's STOP (or where reading stopped)."""
    @property
    def protocol(self) -> Optional[int]:
        """The first pickle's protocol (None when there was no pickle)."""
    @property
    def stopped_at(self) -> Optional[int]:
        """joblib: the offset where the pre-scan stopped, at array data it cannot follow."""
    @property
    def violations(self) -> Tuple[Finding, ...]: ...
    @property
    def copy(self) -> Optional[bytes]:
        """File pre-scans without ``start``: the bytes read, to unpickle from."""

def prescan(
    source: Union[bytes, object],
    policy: Policy,
    joblib: bool = False,
    start: Optional[int] = None,
    memo_inherited: bool = False,
    stream_remaining: Optional[int] = None,
) -> Prescan:
    """Pre-scans the first pickle of ``source`` (``bytes``, or a file object from its current
    position; ``start``: its absolute position if seekable, else exactly the pickle's bytes are
    read and returned as ``copy``), the way ``joblib.load`` reads it with ``joblib``."""

def prefix_kind(prefix: bytes) -> PrefixKind: ...
def scan_bytes(data: bytes, policy: Policy) -> str: ...
def scan_file(path: Union[str, os.PathLike[str]], policy: Policy) -> str: ...
def convert_file(
    input: Union[str, os.PathLike[str]], output: Union[str, os.PathLike[str]], policy: Policy
) -> str: ...
def danger_reason(module: str, name: str) -> Optional[str]: ...
def check_tree_nodes(
    nodes: bytes,
    itemsize: int,
    left: int,
    right: int,
    feature: int,
    node_counts: List[int],
    n_features: List[int],
    max_depths: List[int],
) -> Optional[Tuple[int, int, str, int, str]]: ...
def check_trees(
    trees: List[Any], dtype: Any, itemsize: int, left: int, right: int, feature: int
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
    def walk(self, root: Any, walked: Optional[WalkedObjects] = None) -> Dict[str, List[Any]]: ...

@final
class WalkedObjects:
    """The objects the walks of one outer load (and its nested loads) looked at."""

    def __init__(self) -> None: ...

def cli_main(argv: List[str]) -> int: ...
def _panic_for_tests(message: str) -> None: ...

# Rows as columns: path, size, format, verdict, error and violations as lists, and findings
# and imports as (offsets, {field: values}).
_Columns = Dict[str, Any]

def list_files(
    paths: Sequence[Union[str, os.PathLike[str]]],
    follow_symlinks: bool,
    finding_fields: List[str],
    import_fields: List[str],
) -> Tuple[List[str], _Columns]:
    """The files ``picklefence scan PATHS`` would scan, and the rows of the paths it would not."""

def scan_file_rows(
    paths: Sequence[str], policy: Policy, finding_fields: List[str], import_fields: List[str]
) -> _Columns:
    """Each file's row, scanned as ``picklefence scan`` scans it (its JSON Lines object and size)."""

def scan_bytes_rows(
    paths: Sequence[str],
    contents: Sequence[bytes],
    policy: Policy,
    finding_fields: List[str],
    import_fields: List[str],
) -> _Columns:
    """The rows of contents read elsewhere, each named by the path beside it."""

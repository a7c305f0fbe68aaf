"""The model bytes of the gradient-boosting libraries the named policies allow (``lightgbm``,
``xgboost``), checked before their C++ loaders read them (issue 13: a type allowlist is not
memory safety).

A pickled booster holds its whole model as text (LightGBM) or UBJSON (XGBoost), which
``Booster.__setstate__`` hands to the library's parser. Neither parser checks what prediction
trusts: child indices, split features and output widths are followed unchecked (a child
index past the nodes is a SIGSEGV at ``predict``), and LightGBM's parser itself reads past the
end of a malformed text and ends the process (``std::terminate``) on a count mismatch inside
its parallel loop. While the guard is active the boosters' ``__setstate__`` runs these checks
first (``_native_state.SETSTATE_CHECKED``); a violation raises ``NativeStateError``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Tuple

# --------------------------------------------------------------------------------------------
# LightGBM (src/boosting/gbdt_model_text.cpp, src/io/tree.cpp)

_INT_TOKEN = re.compile(r"[+-]?[0-9]+\Z")
# What LightGBM's AtofPrecise reads whole (Python's float() also takes "1_0" and spaces).
_FLOAT_TOKEN = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity|na)\Z", re.IGNORECASE
)
# Tree.__init__ reads at most this many key lines of a tree.
_TREE_KEY_LINES = 22
_INT32 = (-(2**31), 2**31 - 1)
_MULTICLASS_OBJECTIVES = ("multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr")


class _Broken(Exception):
    """A field of the model text that LightGBM would misread: (field, message)."""


def _ints(value: str, count: int, field: str, low: int = _INT32[0], high: int = _INT32[1]) -> List[int]:
    """``count`` integers in [low, high], space separated (LightGBM's StringToArrayFast parses
    exactly ``count``, past the end of the text when fewer are there)."""
    tokens = _tokens(value)
    if len(tokens) != count:
        raise _Broken(field, f"{len(tokens)} values where the tree needs {count}")
    numbers = []
    for token in tokens:
        if not _INT_TOKEN.match(token):
            raise _Broken(field, f"{token[:40]!r} is not an integer")
        number = int(token)
        if not low <= number <= high:
            raise _Broken(field, f"{number} is outside [{low}, {high}]")
        numbers.append(number)
    return numbers


def _tokens(value: str) -> List[str]:
    """The values of a line as LightGBM reads them: separated by spaces only (its Atoi and Atof
    skip spaces and nothing else: "1\t2" reads as 1 and then 0s, where str.split sees 1 and 2;
    such a token fails the number patterns)."""
    return [token for token in value.split(" ") if token]


def _floats(value: str, count: int, field: str) -> List[float]:
    tokens = _tokens(value)
    if len(tokens) != count:
        raise _Broken(field, f"{len(tokens)} values where the tree needs {count}")
    for token in tokens:
        if not _FLOAT_TOKEN.match(token):
            raise _Broken(field, f"{token[:40]!r} is not a number")
    return [float("nan") if token.lower() == "na" else float(token) for token in tokens]


def _int(value: Optional[str], field: str, low: int, high: int = _INT32[1]) -> int:
    if value is None:
        raise _Broken(field, "missing")
    return _ints(value, 1, field, low, high)[0]


def _tree_lines(text: str, start: int) -> Tuple[Dict[str, str], int]:
    """The key lines of the tree whose first key line starts at ``start`` (what Tree.__init__
    reads: up to 22 ``key=value`` lines, ended by an empty line), and where that empty line is."""
    keys: Dict[str, str] = {}
    position = start
    for _ in range(_TREE_KEY_LINES):
        if text.startswith("\n", position):
            return keys, position
        end = text.find("\n", position)
        if end < 0:  # Tree.__init__ would scan past the end of the text for the line's end
            raise _Broken("tree", "a line without its newline at the end of the text")
        line = text[position:end]
        key, equals, value = line.partition("=")
        if not equals:  # ... or for its '=', into the next lines
            raise _Broken("tree", f"line {line[:40]!r} is not key=value")
        keys[key] = value
        position = end + 1
    if text.startswith("\n", position):
        return keys, position
    raise _Broken("tree", f"more than {_TREE_KEY_LINES} key lines")


def _check_lightgbm_tree(keys: Dict[str, str], features: int) -> None:
    """One tree: every array Tree.__init__ reads has the count it reads, children lead down
    to leaves inside the tree, split features are inside the model's, categorical splits name
    one of the tree's category sets."""
    leaves = _int(keys.get("num_leaves"), "num_leaves", 1)
    categories = _int(keys.get("num_cat"), "num_cat", 0)
    linear = _int(keys.get("is_linear", "0"), "is_linear", _INT32[0]) != 0
    if "leaf_value" not in keys:
        _missing("leaf_value")
    _floats(keys["leaf_value"], leaves, "leaf_value")
    if "leaf_count" in keys:
        _ints(keys["leaf_count"], leaves, "leaf_count")
    if "shrinkage" in keys:
        _floats(keys["shrinkage"], 1, "shrinkage")
    # A single leaf without linear models: Tree.__init__ reads nothing more (a stump writes
    # the other fields empty).
    if leaves > 1 or linear:
        if "leaf_weight" in keys:
            _floats(keys["leaf_weight"], leaves, "leaf_weight")
        nodes = leaves - 1
        for field in ("left_child", "right_child", "split_feature", "threshold"):
            if field not in keys:
                _missing(field)
        children = (
            _ints(keys["left_child"], nodes, "left_child", -leaves, nodes - 1),
            _ints(keys["right_child"], nodes, "right_child", -leaves, nodes - 1),
        )
        for field, side in zip(("left_child", "right_child"), children):
            for node, child in enumerate(side):
                # Splits number new nodes after their parent: anything else loops in predict.
                if 0 <= child <= node:
                    raise _Broken(
                        f"{field}[{node}]", f"{child} is not after its parent (num_leaves {leaves})"
                    )
        _ints(keys["split_feature"], nodes, "split_feature", 0, features - 1)
        thresholds = _floats(keys["threshold"], nodes, "threshold")
        for field in ("split_gain", "internal_value", "internal_weight"):
            if field in keys:
                _floats(keys[field], nodes, field)
        if "internal_count" in keys:
            _ints(keys["internal_count"], nodes, "internal_count")
        decisions = (
            _ints(keys["decision_type"], nodes, "decision_type", -128, 127) if "decision_type" in keys else []
        )
        for node, decision in enumerate(decisions):
            if decision & 1:  # a categorical split: its threshold indexes the category sets
                threshold = thresholds[node]
                if not (threshold == threshold and 0 <= threshold < categories):
                    raise _Broken(
                        f"threshold[{node}]",
                        f"{threshold} is not one of the tree's {categories} category sets",
                    )
    if linear:
        if "leaf_const" in keys:
            _floats(keys["leaf_const"], leaves, "leaf_const")
        if "num_features" in keys:
            counts = _ints(keys["num_features"], leaves, "num_features", 0)
            total = sum(counts)
            if "leaf_features" in keys:
                _ints(keys["leaf_features"], total, "leaf_features", 0, features - 1)
            if "leaf_coeff" in keys:
                _floats(keys["leaf_coeff"], total, "leaf_coeff")
    if categories > 0:
        for field in ("cat_boundaries", "cat_threshold"):
            if field not in keys:
                _missing(field)
        boundaries = _ints(keys["cat_boundaries"], categories + 1, "cat_boundaries", 0)
        if any(a > b for a, b in zip(boundaries, boundaries[1:])):
            raise _Broken("cat_boundaries", "not increasing")
        _ints(keys["cat_threshold"], boundaries[-1], "cat_threshold", 0, 2**32 - 1)


def _missing(field: str) -> None:
    raise _Broken(field, "missing")


def _check_lightgbm_header(keys: Dict[str, str]) -> int:
    """The header fields the loader and predict read; the model's feature count."""
    classes = _int(keys.get("num_class"), "num_class", 1)
    per_iteration = _int(keys.get("num_tree_per_iteration", str(classes)), "num_tree_per_iteration", 1)
    # predict adds the trees of an iteration into num_tree_per_iteration outputs of a row of
    # num_class: fewer trees leave the rest unwritten (heap bytes returned as predictions).
    if per_iteration != classes:
        raise _Broken("num_tree_per_iteration", f"{per_iteration} for num_class {classes}")
    features = _int(keys.get("max_feature_idx"), "max_feature_idx", 0) + 1
    objective = keys.get("objective", "").split()
    if objective and objective[0] in _MULTICLASS_OBJECTIVES:
        # Its output transform writes num_class values per row, read from the objective.
        declared = [token.partition(":")[2] for token in objective[1:] if token.startswith("num_class:")]
        if declared != [str(classes)]:
            raise _Broken("objective", f"{' '.join(objective)[:80]!r} for num_class {classes}")
    return features


def check_lightgbm_state(booster: Any, state: Any) -> None:
    """``lightgbm.basic.Booster.__setstate__``'s model text (``state["_handle"]`` or
    ``state["handle"]``), read as ``LGBM_BoosterLoadModelFromString`` reads it."""
    model = state.get("_handle", state.get("handle", None))
    if model is not None:
        _named_as(booster, _check_lightgbm_model, model)


def _named_as(booster: Any, check: Callable[[Any], None], model: Any) -> None:
    """``check(model)``, its violation raised as the booster's ``NativeStateError``."""
    from ._native_state import _fail

    try:
        check(model)
    except _Broken as broken:
        field, message = broken.args
        raise _fail(booster, f"model.{field}", message) from None


def _check_lightgbm_model(model: Any) -> None:
    if type(model) is not str:
        raise _Broken("text", f"a {type(model).__name__}, not the model's text")
    if "\0" in model or "\r" in model:  # the C string ends at NUL; '\r' ends lines there too
        raise _Broken("text", "holds NUL or carriage-return characters, which LightGBM never writes")
    header: Dict[str, str] = {}
    position = 0
    while position < len(model):  # the loader's header loop: lines up to the first "Tree="
        end = model.find("\n", position)
        end = len(model) if end < 0 else end
        line = model[position:end]
        if line.startswith("Tree="):
            break
        if line:
            key, _, value = line.partition("=")
            header[key] = value
        position = end + 1
    features = _check_lightgbm_header(header)
    first = position
    sizes = header.get("tree_sizes")
    if sizes is not None:
        # Each tree is parsed where the sizes say it starts, in parallel: a size off by one
        # starts a tree mid-line, a large one past the end of the text.
        lengths = _ints(sizes, len(sizes.split()), "tree_sizes", 0, len(model))
        start = first
        for number, length in enumerate(lengths):
            _check_lightgbm_tree_at(model, start, features, number)
            start += length
        return
    # Without sizes, one after the other: any number of empty lines, then a tree or the end.
    position, number = first, 0
    while position < len(model):
        if model.startswith("\n", position):
            position += 1
        elif model.startswith("Tree=", position):
            position = _check_lightgbm_tree_at(model, position, features, number)
            number += 1
        else:
            break


def _check_lightgbm_tree_at(model: str, start: int, features: int, number: int) -> int:
    """The tree whose ``Tree=`` line starts at ``start``; where its empty last line is."""
    if not model.startswith("Tree=", start):
        raise _Broken(f"trees[{number}]", "tree_sizes do not lead to a tree")
    end = model.find("\n", start)
    if end < 0:
        raise _Broken(f"trees[{number}]", "the text ends at its first line")
    try:
        keys, blank = _tree_lines(model, end + 1)
        _check_lightgbm_tree(keys, features)
    except _Broken as broken:
        field, message = broken.args
        raise _Broken(f"trees[{number}].{field}", message) from None
    return blank


# --------------------------------------------------------------------------------------------
# XGBoost (src/tree/tree_model.cc, src/common/json.cc)

# Nesting deeper than any model's: XGBoost's reader recurses once per level.
_UBJSON_DEPTH = 32
_UBJSON_SCALARS = {"i": ">i1", "U": ">u1", "I": ">i2", "l": ">i4", "L": ">i8", "d": ">f4", "D": ">f8"}


class _UBJSON:
    """A reader of the UBJSON XGBoost serialises a booster to (``XGBoosterSerializeToBuffer``):
    objects, arrays (plain, counted, typed: typed ones become NumPy arrays), strings, numbers,
    booleans, null. Anything else, or nesting deeper than a model's, is refused."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def take(self, size: int) -> bytes:
        end = self.position + size
        if size < 0 or end > len(self.data):
            raise _Broken("model", f"runs past the end of its {len(self.data)} bytes")
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def marker(self) -> str:
        return chr(self.take(1)[0])

    def number(self, marker: str) -> Any:
        import numpy as np

        dtype = _UBJSON_SCALARS.get(marker)
        if dtype is None:
            raise _Broken("model", f"marker {marker!r} at byte {self.position - 1} is not a number")
        value = np.frombuffer(self.take(np.dtype(dtype).itemsize), dtype=dtype)[0]
        return float(value) if marker in "dD" else int(value)

    def count(self) -> int:
        size = self.number(self.marker())
        if not isinstance(size, int) or not 0 <= size <= len(self.data):
            raise _Broken("model", f"a length of {size} at byte {self.position}")
        return size

    def value(self, depth: int = 0, marker: Optional[str] = None) -> Any:
        if depth > _UBJSON_DEPTH:
            raise _Broken("model", f"nested deeper than {_UBJSON_DEPTH} levels")
        marker = marker or self.marker()
        if marker == "{":
            fields: Dict[str, Any] = {}
            while self.data[self.position : self.position + 1] != b"}":
                key = self.take(self.count()).decode("utf-8", "replace")
                fields[key] = self.value(depth + 1)
            self.position += 1
            return fields
        if marker == "[":
            return self.array(depth)
        if marker == "S":
            return self.take(self.count()).decode("utf-8", "replace")
        if marker in "TFZ":
            return {"T": True, "F": False, "Z": None}[marker]
        return self.number(marker)

    def array(self, depth: int) -> Any:
        import numpy as np

        typed = None
        if self.data[self.position : self.position + 1] == b"$":
            self.position += 1
            typed = self.marker()
            if typed not in _UBJSON_SCALARS or self.marker() != "#":
                raise _Broken("model", f"a typed array of {typed!r} at byte {self.position}")
            size = self.count()
            dtype = np.dtype(_UBJSON_SCALARS[typed])
            return np.frombuffer(self.take(size * dtype.itemsize), dtype=dtype)
        if self.data[self.position : self.position + 1] == b"#":
            self.position += 1
            return [self.value(depth + 1) for _ in range(self.count())]
        items = []
        while self.data[self.position : self.position + 1] != b"]":
            if self.position >= len(self.data):
                raise _Broken("model", "an array without its end")
            items.append(self.value(depth + 1))
        self.position += 1
        return items


def _field(fields: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(fields, dict) or key not in fields:
            raise _Broken(".".join(path), "missing")
        fields = fields[key]
    return fields


def _count_field(fields: Any, *path: str, low: int = 0) -> int:
    """A count XGBoost keeps as a decimal string (``"num_nodes": "3"``)."""
    value = _field(fields, *path)
    if not (isinstance(value, str) and _INT_TOKEN.match(value)) or not low <= int(value) <= _INT32[1]:
        raise _Broken(".".join(path), f"{str(value)[:40]!r} is not a count")
    return int(value)


def _int_array(fields: Any, key: str, size: int) -> Any:
    import numpy as np

    values = _field(fields, key)
    array = np.asarray(values) if isinstance(values, list) else values
    if not isinstance(array, np.ndarray) or array.shape != (size,) or (size and array.dtype.kind not in "iu"):
        raise _Broken(key, f"not {size} integers")
    return array.astype(np.int64)


def _unchecked(what: str) -> _Broken:
    return _Broken(what, "picklefence cannot check this kind of XGBoost model yet, so it is refused")


def _check_xgboost_tree(tree: Any, features: int) -> None:
    """One regression tree as predict walks it and LoadModel reads it: every node's parent
    inside the tree (LoadModel reads the parent's children), every split's children inside
    the tree and each node the child of one split at most (no loops, no shared subtrees), its
    feature inside the model's; one value per leaf."""
    import numpy as np

    nodes = _count_field(tree, "tree_param", "num_nodes", low=1)
    if _count_field(tree, "tree_param", "size_leaf_vector") > 1:
        raise _unchecked("multi-target trees")
    if "split_type" in tree:
        _check_xgboost_categories(tree, nodes)
    left = _int_array(tree, "left_children", nodes)
    right = _int_array(tree, "right_children", nodes)
    parents = _int_array(tree, "parents", nodes)
    features_read = _int_array(tree, "split_indices", nodes)
    if nodes > 1 and not (parents[1:].min() >= 0 and parents[1:].max() < nodes):
        raise _Broken("parents", f"a parent outside the tree's {nodes} nodes")
    split = left != -1
    children = np.concatenate([left[split], right[split]])
    if children.size and not (children.min() >= 1 and children.max() < nodes):
        raise _Broken("left_children", f"a child outside [1, {nodes})")
    if np.unique(children).size != children.size:
        raise _Broken("left_children", "a node that is the child of two splits")
    if np.any(right[~split] != -1):
        raise _Broken("right_children", "a leaf with a right child")
    used = features_read[split]
    if used.size and not (used.min() >= 0 and used.max() < features):
        raise _Broken("split_indices", f"a feature outside the model's {features}")


# Bytes of category bitsets LoadCategoricalSplit may allocate for one tree (a bitset per
# categorical split, as wide as its largest category): far above any real model's.
_CATEGORY_BITS_BYTES = 64 << 20


def _check_xgboost_categories(tree: Any, nodes: int) -> None:
    """A tree's categorical splits as LoadCategoricalSplit reads them: for each node listed (in
    increasing order, inside the tree) a segment of ``categories`` inside it, and categories
    that index a bitset (not negative; the bitsets within a bounded size)."""
    import numpy as np

    kinds = _int_array(tree, "split_type", nodes)
    if kinds.size and not (kinds.min() >= 0 and kinds.max() <= 1):
        raise _Broken("split_type", "a split neither numeric (0) nor categorical (1)")
    listed = _int_array(tree, "categories_nodes", len(_field(tree, "categories_nodes")))
    starts = _int_array(tree, "categories_segments", listed.size)
    sizes = _int_array(tree, "categories_sizes", listed.size)
    categories = _int_array(tree, "categories", len(_field(tree, "categories")))
    if listed.size and (listed.min() < 0 or listed.max() >= nodes or np.any(np.diff(listed) <= 0)):
        raise _Broken("categories_nodes", f"not increasing node ids inside the tree's {nodes}")
    if listed.size and not np.all(kinds[listed] == 1):
        raise _Broken("categories_nodes", "a node whose split is not categorical")
    if sizes.size and (sizes.min() < 1 or starts.min() < 0 or np.max(starts + sizes) > categories.size):
        raise _Broken("categories_segments", f"a segment outside the {categories.size} categories")
    if categories.size and categories.min() < 0:
        raise _Broken("categories", f"{int(categories.min())} is not a category")
    widest = [int(categories[a : a + n].max()) for a, n in zip(starts.tolist(), sizes.tolist())]
    if sum(cat // 8 + 4 for cat in widest) > _CATEGORY_BITS_BYTES:
        raise _Broken("categories", f"bitsets beyond {_CATEGORY_BITS_BYTES >> 20} MiB")


def _check_xgboost_encodings(cats: Any, features: int) -> None:
    """The category names XGBoost recodes input categories with (``cats``): per feature a
    segment of ``sorted_idx`` (a permutation of its categories) and, for string categories,
    ``offsets`` into ``values``, increasing, inside them."""
    import numpy as np

    if not isinstance(cats, dict):
        raise _Broken("cats", f"a {type(cats).__name__}, not the category encodings")
    if not any(len(value) for value in cats.values()):
        return  # a model without categorical features
    encodings = _field(cats, "enc")
    if not isinstance(encodings, list) or len(encodings) != features:
        raise _Broken("cats.enc", f"not one encoding for each of the {features} features")
    bounds = _int_array(cats, "feature_segments", features + 1)
    order = _int_array(cats, "sorted_idx", len(_field(cats, "sorted_idx")))
    if bounds[0] != 0 or bounds[-1] != order.size or np.any(np.diff(bounds) < 0):
        raise _Broken("cats.feature_segments", f"not increasing from 0 to the {order.size} categories")
    for feature, encoding in enumerate(encodings):
        count = int(bounds[feature + 1] - bounds[feature])
        segment = order[bounds[feature] : bounds[feature + 1]]
        if count and not np.array_equal(np.sort(segment), np.arange(count)):
            raise _Broken(f"cats.sorted_idx[{feature}]", f"not an order of its {count} categories")
        if not isinstance(encoding, dict) or set(encoding) - {"offsets", "values"}:
            raise _unchecked("category encodings of this layout")
        values = _field(encoding, "values")
        if "offsets" in encoding:
            offsets = _int_array(encoding, "offsets", count + 1 if count else len(encoding["offsets"]))
            if offsets.size and (
                offsets[0] != 0 or offsets[-1] != len(values) or np.any(np.diff(offsets) < 0)
            ):
                raise _Broken(f"cats.enc[{feature}].offsets", "not increasing over its values")
        elif len(values) != count:
            raise _Broken(f"cats.enc[{feature}].values", f"not its {count} categories")


def _check_xgboost_model(data: Any) -> None:
    import numpy as np

    if not isinstance(data, (bytes, bytearray)):
        raise _Broken("handle", f"a {type(data).__name__}, not the model's bytes")
    reader = _UBJSON(bytes(data))
    if reader.marker() != "{":
        raise _unchecked("models not serialised as UBJSON")
    root = reader.value(marker="{")
    learner = _field(root, "Model", "learner")
    features = _count_field(learner, "learner_model_param", "num_feature")
    outputs = max(
        _count_field(learner, "learner_model_param", "num_class"),
        _count_field(learner, "learner_model_param", "num_target"),
        1,
    )
    booster = _field(learner, "gradient_booster")
    name = _field(booster, "name")
    if name == "dart":
        model = _field(booster, "gbtree", "model")
    elif name == "gbtree":
        model = _field(booster, "model")
    else:
        raise _unchecked(f"{str(name)[:20]} boosters")
    _check_xgboost_encodings(model.get("cats", {}), features)
    trees = _field(model, "trees")
    if not isinstance(trees, list):
        raise _Broken("trees", "not a list")
    if _count_field(model, "gbtree_model_param", "num_trees") != len(trees):
        raise _Broken("gbtree_model_param.num_trees", f"not the {len(trees)} trees held")
    # predict adds each tree into the output column tree_info names.
    groups = _int_array(model, "tree_info", len(trees))
    if groups.size and not (groups.min() >= 0 and groups.max() < outputs):
        raise _Broken("tree_info", f"an output outside the model's {outputs}")
    # Older models have none: XGBoost derives it from the trees.
    bounds = (
        _int_array(model, "iteration_indptr", len(model["iteration_indptr"]))
        if "iteration_indptr" in model
        else []
    )
    if len(bounds) and (bounds[0] != 0 or bounds[-1] != len(trees) or np.any(np.diff(bounds) < 0)):
        raise _Broken("iteration_indptr", f"not increasing from 0 to the {len(trees)} trees")
    if name == "dart" and len(_field(booster, "weight_drop")) != len(trees):
        raise _Broken("weight_drop", f"not one weight for each of the {len(trees)} trees")
    for number, tree in enumerate(trees):
        try:
            _check_xgboost_tree(tree, features)
        except _Broken as broken:
            field, message = broken.args
            raise _Broken(f"trees[{number}].{field}", message) from None


def check_xgboost_state(booster: Any, state: Any) -> None:
    """``xgboost.core.Booster.__setstate__``'s serialised model (``state["handle"]``), read
    before ``XGBoosterUnserializeFromBuffer`` reads it."""
    data = state["handle"] if isinstance(state, dict) and "handle" in state else None
    if data is not None:
        _named_as(booster, _check_xgboost_model, data)

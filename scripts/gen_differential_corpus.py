#!/usr/bin/env python3
"""Write the differential-test corpus: pickles made by CPython and what `pickletools.genops` reads.

Usage: gen_differential_corpus.py OUT.jsonl

`crates/picklefence/tests/differential.rs` runs this script and checks that picklefence's decoder
yields, for every pickle, exactly the (offset, opcode, argument) sequence that `genops` yields.

Output: one JSON object per line,

    {"id": str, "pickle": hex, "ops": [[offset, "OPNAME", arg], ...]}

where `ops` is `pickletools.genops(pickle)` (which stops at the first STOP; a few pickles carry
trailing bytes after it that are not part of the listing), `OPNAME` is `pickletools`' name and
`arg` is the argument genops returns, in this canonical JSON:

    no argument (genops gives None)  -> null
    bool  (INT "00" / "01")          -> {"bool": true | false}
    int   (every other integer: uint1/2/4/8, int4, decimalnl_short, decimalnl_long, long1,
           long4; i.e. PROTO, FRAME, BININT*, INT, LONG*, GET/PUT and their binary forms, EXT*)
                                     -> {"int": "<decimal, '-' for negatives, no leading zeros>"}
    float (FLOAT, BINFLOAT)          -> {"float": float.hex(x)}, or {"float": "nan"} for any NaN
                                        ("inf", "-inf", "-0x0.0p+0" as float.hex writes them)
    bytes, bytearray (BINBYTES*, SHORT_BINBYTES, BYTEARRAY8)
                                     -> {"bytes": "<hex>"}
    str   (everything genops returns as str)
                                     -> {"str": "<hex of s.encode('utf-8', 'surrogatepass')>"}

The str case covers genops' own decodings, which the consumer has to reproduce: STRING is
`codecs.escape_decode` of the unquoted line, then `.decode("ascii")`; GLOBAL and INST are
"module name" (each line escape-decoded and ASCII-decoded, joined with one space); PERSID is its
line escape-decoded and ASCII-decoded; BINSTRING and SHORT_BINSTRING are latin-1 decoded;
UNICODE is `raw-unicode-escape` decoded; SHORT_BINUNICODE, BINUNICODE and BINUNICODE8 are
UTF-8 decoded with `surrogatepass`. Integers from INT/LONG/GET/PUT are genops' `int(s)` (base
10, whitespace and underscores allowed, LONG without one trailing "L"); note that genops turns
the exact lines "00" and "01" into booleans for GET and PUT as well as for INT.

Contents (>= 10,000 pickles, each also in its `pickletools.optimize` version): every protocol
0-5 with both the C pickler and `pickle._Pickler`; protocol 5 also with out-of-band buffers
(`buffer_callback`, giving NEXT_BUFFER / READONLY_BUFFER); seeded random nested containers;
shared and recursive structures; ints at every encoding boundary and huge; floats incl. nan,
inf, -0.0, subnormals; bytes and bytearrays; sets and frozensets; strings with every escape
(quotes, backslashes, newlines, CR, NUL, non-ASCII, astral characters, lone surrogates);
objects with __reduce__ / __reduce_ex__ / __getnewargs(_ex)__ / __setstate__ / slots /
state setters; copyreg extension codes (EXT1, EXT2, EXT4); persistent ids; torch-style rebuild
calls built without torch; handcrafted pickles (protocol-0 INT "00"/"01", LONG with and without
"L", STRING with every escape form, CRLF line endings, Python 2 style pickles, DUP, POP, INST,
OBJ, BINBYTES8, BINUNICODE8, BYTEARRAY8, non-minimal LONG1) that `pickle.loads` is checked to
accept; and, when importable, NumPy arrays of many dtypes and scalars, scikit-learn estimators
fitted on tiny data, and PyTorch tensors, parameters and state dicts (`pickle.dumps` of the
tensor, the `data.pkl` of `torch.save` archives, the pickles of legacy `torch.save` streams).

Deterministic: the script re-executes itself with PYTHONHASHSEED=0 and seeds everything it
draws. Storage keys that legacy `torch.save` derives from memory addresses are replaced by
same-length stable keys (and the result is checked to load back).
"""

from __future__ import annotations

import collections
import copyreg
import datetime
import decimal
import enum
import fractions
import functools
import gc
import io
import json
import math
import os
import pickle
import pickletools
import random
import sys
import uuid
import warnings
import zipfile

if os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(
        sys.executable,
        [sys.executable, *sys.argv],
        {**os.environ, "PYTHONHASHSEED": "0"},
    )

SEED = 0x5EED_F00D
MIN_PICKLES = 10_000


# --------------------------------------------------------------------------------------------
# Canonical arguments and the writer


def canon(arg):
    if arg is None:
        return None
    if isinstance(arg, bool):
        return {"bool": arg}
    if isinstance(arg, int):
        return {"int": str(arg)}
    if isinstance(arg, float):
        return {"float": "nan" if math.isnan(arg) else arg.hex()}
    if isinstance(arg, (bytes, bytearray)):
        return {"bytes": bytes(arg).hex()}
    if isinstance(arg, str):
        return {"str": arg.encode("utf-8", "surrogatepass").hex()}
    raise TypeError(f"genops argument of unexpected type {type(arg)!r}")


class Corpus:
    def __init__(self, out):
        self.out = out
        self.count = 0
        self.ids = set()
        self.opnames = collections.Counter()

    def add(self, ident, data, optimize=True):
        """Records `data` and its `pickletools.optimize` version."""
        self._write(ident, data)
        if optimize:
            self._write(ident + "/opt", pickletools.optimize(data))

    def _write(self, ident, data):
        if ident in self.ids:
            raise ValueError(f"duplicate id {ident}")
        self.ids.add(ident)
        ops = []
        for opcode, arg, pos in pickletools.genops(data):
            ops.append([pos, opcode.name, canon(arg)])
            self.opnames[opcode.name] += 1
        line = {"id": ident, "pickle": bytes(data).hex(), "ops": ops}
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.count += 1

    def dumps(self, ident, obj, protocols=range(6), python_pickler=False, oob=False):
        """`obj` in each protocol (C pickler, optionally also the Python one) and optimized."""
        for proto in protocols:
            self.add(f"{ident}/p{proto}", pickle.dumps(obj, protocol=proto))
            if python_pickler:
                self.add(f"{ident}/py{proto}", pickle._dumps(obj, protocol=proto))
            if oob and proto == 5:
                buffers = []
                data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
                self.add(f"{ident}/p5oob", data)


# --------------------------------------------------------------------------------------------
# Classes the pickles refer to (module `__main__`)


class Plain:
    def __init__(self, a=1, b="two"):
        self.a = a
        self.b = b


class Slotted:
    __slots__ = ("x", "y")

    def __init__(self, x=1, y=2):
        self.x = x
        self.y = y

    def __getstate__(self):
        return (None, {"x": self.x, "y": self.y})


class SlottedWithDict:
    __slots__ = ("__dict__", "x")

    def __init__(self):
        self.x = 1
        self.z = "zed"

    def __getstate__(self):
        return (self.__dict__, {"x": self.x})


class Reduced:
    """__reduce__ with arguments only (REDUCE)."""

    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        return (Reduced, self.args)


class ReducedState:
    """__reduce__ with a state (BUILD) and list and dict items (APPENDS, SETITEMS)."""

    def __init__(self, items=(), pairs=(), state=None):
        self.items = list(items)
        self.pairs = dict(pairs)
        self.state = state

    def append(self, item):
        self.items.append(item)

    def extend(self, items):
        self.items.extend(items)

    def __setitem__(self, key, value):
        self.pairs[key] = value

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):
        return (
            ReducedState,
            (),
            self.state,
            iter(self.items) if self.items else None,
            iter(self.pairs.items()) if self.pairs else None,
        )


def _set_state(obj, state):
    obj.state = state


class WithStateSetter:
    """Six-tuple __reduce__ (state setter: REDUCE then POP)."""

    def __init__(self, state=None):
        self.state = state

    def __reduce__(self):
        return (WithStateSetter, (), self.state, None, None, _set_state)


class NewArgs:
    """__getnewargs__ (NEWOBJ from protocol 2)."""

    def __new__(cls, *args):
        self = super().__new__(cls)
        self.args = args
        return self

    def __getnewargs__(self):
        return self.args


class NewArgsEx:
    """__getnewargs_ex__ (NEWOBJ_EX from protocol 4)."""

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        self.args = args
        self.kwargs = kwargs
        return self

    def __getnewargs_ex__(self):
        return self.args, self.kwargs


class ReduceEx:
    def __init__(self, value=0):
        self.value = value

    def __reduce_ex__(self, protocol):
        return (ReduceEx, (self.value + protocol,))


class AsGlobal:
    """__reduce__ returning a string: pickled as a reference to a module attribute."""

    def __reduce__(self):
        return "AS_GLOBAL"


AS_GLOBAL = AsGlobal()


class Outer:
    class Inner:
        class Deepest:
            pass


class MyList(list):
    pass


class MyDict(dict):
    pass


class MyInt(int):
    pass


class MyStr(str):
    pass


class Color(enum.Enum):
    RED = 1
    GREEN = "green"


Point = collections.namedtuple("Point", "x y")


class ExtA:
    pass


class ExtB:
    def __init__(self, v=1):
        self.v = v


class ExtC:
    pass


class PersistentPickler(pickle.Pickler):
    """Gives objects of type `Persistent` a persistent id."""

    def persistent_id(self, obj):
        if isinstance(obj, Persistent):
            return obj.pid
        return None


class Persistent:
    def __init__(self, pid):
        self.pid = pid


class Global:
    """A reference to `module.name` that need not exist here (written by `FreePickler`)."""

    def __init__(self, module, name):
        self.module = module
        self.name = name


class FakeStorage:
    """A torch storage stand-in: pickled as torch.save's persistent id."""

    def __init__(self, dtype_name, key, numel):
        self.pid = ("storage", Global("torch", dtype_name), key, "cpu", numel)


class Call:
    """`func(*args)` where func is a `Global`: pickled as a REDUCE."""

    def __init__(self, func, *args):
        self.func = func
        self.args = args

    def __reduce__(self):
        return (self.func, self.args)


class FreePickler(pickle._Pickler):
    """The pure-Python pickler, writing `Global`s without importing them, and storages as
    persistent ids: how torch.save's data.pkl looks, built without torch."""

    dispatch = dict(pickle._Pickler.dispatch)  # noqa: RUF012 (pickle._Pickler's own pattern)

    def persistent_id(self, obj):
        if not isinstance(obj, FakeStorage):
            return None
        if self.proto == 0:  # PERSID: a line of text
            kind, storage_type, key, location, numel = obj.pid
            return f"{kind}:{storage_type.name}:{key}:{location}:{numel}"
        return obj.pid

    def save_free_global(self, obj):
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
        self.memoize(obj)

    dispatch[Global] = save_free_global

    def save_reduce(self, func, args, *rest, obj=None):
        # `Call.__reduce__` returns a Global as the callable; the stock save_reduce insists on
        # a real callable.
        if isinstance(func, Global):
            self.save(func)
            self.save(args)
            self.write(pickle.REDUCE)
            if obj is not None:
                self.memoize(obj)
            return
        super().save_reduce(func, args, *rest, obj=obj)


def free_dumps(obj, proto):
    out = io.BytesIO()
    FreePickler(out, proto).dump(obj)
    return out.getvalue()


class Loader(pickle.Unpickler):
    def persistent_load(self, pid):
        return ("persistent", pid)


def check_loads(data, **kwargs):
    """Raises unless CPython's unpickler reads `data` (persistent ids allowed)."""
    return Loader(io.BytesIO(data), **kwargs).load()


# --------------------------------------------------------------------------------------------
# Values


STRING_PIECES = [
    "",
    "a",
    "plain ascii",
    "'",
    '"',
    "'\"",
    "\\",
    "\\\\",
    "\\n",
    "\\u0041",
    "\\U0001F600",
    "\\x41",
    "\n",
    "\r",
    "\r\n",
    "\t",
    "\0",
    "\x01\x1f",
    "\x1a",
    "\x7f",
    "\x80",
    "\x85",
    "\xa0",
    "é",
    "ÿ",
    "\u0100",
    "€",
    "\u2028",
    "中文",
    "\ufeff",
    "\uffff",
    "😀",
    "\U0010ffff",
    "\U00010000",
    "\ud800",
    "\udfff",
    "\udc80",
    "\ud83d\ude00",
    "x" * 255,
    "y" * 256,
    " ",
    "L",
    "00",
    "01",
    "I1\n.",
]

SHORT_PIECES = [s for s in STRING_PIECES if len(s) < 20]

INTS = [
    0,
    1,
    -1,
    2,
    127,
    128,
    255,
    256,
    -255,
    -256,
    65535,
    65536,
    -65536,
    2**31 - 1,
    2**31,
    -(2**31),
    -(2**31) - 1,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    -(2**64),
    10**30,
    -(10**30),
    2**2039,
    -(2**2039),
    2**2040,
    -(2**2040),
    2**2047 - 1,
    2**2048,
    -(2**2048),
    3**5000,
    -(7**3000),
]

FLOATS = [
    0.0,
    -0.0,
    1.0,
    -1.5,
    0.1,
    1 / 3,
    math.pi,
    1e16,
    1e22,
    123456789.125,
    1e308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    2.2250738585072014e-308,
    1e-310,
    5e-324,
    -5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
    -float("nan"),
]


def rand_str(rng):
    pieces = STRING_PIECES if rng.random() < 0.1 else SHORT_PIECES
    return "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 5)))


def rand_bytes(rng):
    n = rng.choice([0, 1, 3, 16, 255, 256, 300] if rng.random() < 0.1 else [0, 1, 3, 16])
    return bytes(rng.randrange(256) for _ in range(n))


def rand_scalar(rng):
    kind = rng.randrange(13)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice(INTS)
    if kind == 3:
        return rng.randrange(-(2**40), 2**40) >> rng.randrange(41)
    if kind == 4:
        return rng.choice(FLOATS)
    if kind == 5:
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randrange(-300, 300)
    if kind == 6:
        return rand_str(rng)
    if kind == 7:
        return rand_bytes(rng)
    if kind == 8:
        return bytearray(rand_bytes(rng))
    if kind == 9:
        return complex(rng.choice(FLOATS), rng.choice(FLOATS))
    if kind == 10:
        return rng.choice(
            [
                Plain(rng.randrange(100), rand_str(rng)),
                Slotted(rand_str(rng), None),
                Reduced(rng.randrange(5), rand_str(rng)),
                NewArgs(rng.randrange(5)),
                Color.RED,
                Point(1, rand_str(rng)),
                MyInt(rng.randrange(1000)),
            ]
        )
    if kind == 11:
        return rng.choice([int, str, Plain, Outer.Inner, Ellipsis, NotImplemented, len, math.sqrt])
    return rng.randrange(-5, 300)


def rand_hashable(rng, depth):
    kind = rng.randrange(6)
    if kind == 0 and depth > 0:
        return tuple(rand_hashable(rng, depth - 1) for _ in range(rng.randrange(4)))
    if kind == 1 and depth > 0:
        return frozenset(rand_hashable(rng, depth - 1) for _ in range(rng.randrange(4)))
    value = rand_scalar(rng)
    # Only values whose hash (and so set order) does not depend on memory addresses (in
    # Python 3.11 that excludes None, too).
    if value is None or not isinstance(value, (int, float, str, bytes, complex, Color)):
        return rand_str(rng)
    if value != value:  # NaN (also inside a complex) hashes by identity
        return 0.5
    return value


def rand_obj(rng, depth, pool):
    if depth <= 0 or rng.random() < 0.3:
        if pool and rng.random() < 0.15:
            return rng.choice(pool)  # shared reference: memo GET
        value = rand_scalar(rng)
        pool.append(value)
        return value
    kind = rng.randrange(9)
    n = rng.choice([0, 1, 2, 3, 4, 5])
    if kind == 0:
        value = [rand_obj(rng, depth - 1, pool) for _ in range(n)]
    elif kind == 1:
        value = tuple(rand_obj(rng, depth - 1, pool) for _ in range(n))
    elif kind == 2:
        value = {rand_hashable(rng, 1): rand_obj(rng, depth - 1, pool) for _ in range(n)}
    elif kind == 3:
        value = {rand_hashable(rng, 1) for _ in range(n)}
    elif kind == 4:
        value = frozenset(rand_hashable(rng, 1) for _ in range(n))
    elif kind == 5:
        value = ReducedState(
            [rand_obj(rng, depth - 1, pool) for _ in range(n)],
            {rand_str(rng): rand_obj(rng, depth - 1, pool) for _ in range(rng.randrange(3))},
            rand_obj(rng, depth - 1, pool) if rng.random() < 0.5 else None,
        )
    elif kind == 6:
        value = Plain(rand_obj(rng, depth - 1, pool), rand_obj(rng, depth - 1, pool))
    elif kind == 7:
        value = collections.OrderedDict((rand_str(rng), rand_obj(rng, depth - 1, pool)) for _ in range(n))
    else:
        value = NewArgsEx(rand_obj(rng, depth - 1, pool), key=rand_obj(rng, depth - 1, pool))
    pool.append(value)
    return value


def recursive_values():
    lst = []
    lst.append(lst)
    dct = {}
    dct["self"] = dct
    dct["list"] = [dct, lst]
    tup_holder = []
    tup = (tup_holder, 1)
    tup_holder.append(tup)  # a tuple reached again while being pickled: POP / POP_MARK
    deep = ([([],)],)
    deep[0][0][0].append(deep)
    obj = Plain()
    obj.a = obj
    obj.b = [obj, {"o": obj}]
    red = ReducedState()
    red.items.append(red)
    red.pairs["me"] = red
    red.state = {"me": red}
    shared = ["shared"]
    return {
        "list": lst,
        "dict": dct,
        "tuple": tup,
        "deep_tuple": deep,
        "object": obj,
        "reduced": red,
        "shared": [shared, shared, (shared, shared)],
        "mixed": [lst, dct, tup, obj],
    }


def special_values():
    values = {}
    for i, s in enumerate(STRING_PIECES):
        values[f"str/{i}"] = s
    values["str/all"] = "".join(STRING_PIECES)
    values["str/latin1"] = "".join(map(chr, range(256)))
    values["str/surrogate_edges"] = "".join(
        map(chr, [*range(0xD7F8, 0xD808), *range(0xDBF8, 0xDC08), *range(0xDFF8, 0xE008)])
    )
    values["big/str"] = "long string " * 6000  # beyond a frame
    for i, n in enumerate(INTS):
        values[f"int/{i}"] = n
    values["int/bools"] = [True, False, 0, 1, [True]]
    for i, x in enumerate(FLOATS):
        values[f"float/{i}"] = x
    values["bytes/empty"] = b""
    values["bytes/all"] = bytes(range(256))
    values["bytes/255"] = b"\xff" * 255
    values["bytes/256"] = b"\x00" * 256
    values["big/bytes"] = bytes(range(256)) * 280
    values["bytearray/empty"] = bytearray()
    values["bytearray/all"] = bytearray(range(256))
    values["big/bytearray"] = bytearray(b"ba") * 35000
    values["set/empty"] = set()
    values["set/ints"] = set(range(50))
    values["big/set"] = set(range(2500))  # several ADDITEMS batches
    values["frozenset/empty"] = frozenset()
    values["frozenset/mixed"] = frozenset([1, "a", (2, 3), b"b", None])
    values["big/list"] = list(range(2500))  # several APPENDS batches
    values["big/dict"] = {i: str(i) for i in range(2100)}  # several SETITEMS batches
    values["tuple/sizes"] = [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)]
    values["nested/deep"] = functools.reduce(lambda acc, _: [acc], range(60), "bottom")
    values["objects/plain"] = Plain()
    values["objects/slotted"] = Slotted()
    values["objects/slotted_dict"] = SlottedWithDict()
    values["objects/reduced"] = Reduced(1, "a", None)
    values["objects/reduced_state"] = ReducedState([1, 2, 3], {"k": "v", 2: 3}, {"s": 1})
    values["objects/reduced_one_item"] = ReducedState([1], {"k": 1})
    values["objects/state_setter"] = WithStateSetter({"a": 1})
    values["objects/newargs"] = NewArgs(1, "two", 3.0)
    values["objects/newargs_ex"] = NewArgsEx(1, key="value", other=[1])
    values["objects/reduce_ex"] = ReduceEx(10)
    values["objects/as_global"] = AS_GLOBAL
    values["objects/nested_classes"] = [Outer, Outer.Inner, Outer.Inner.Deepest]
    values["objects/nested_instance"] = Outer.Inner.Deepest()
    values["objects/subclasses"] = [MyList([1, 2]), MyDict(a=1), MyInt(5), MyStr("s")]
    values["objects/enum"] = [Color.RED, Color.GREEN]
    values["objects/namedtuple"] = Point(1, 2)
    values["stdlib/collections"] = [
        collections.OrderedDict(a=1, b=2),
        collections.defaultdict(list, {"x": [1]}),
        collections.Counter("abracadabra"),
        collections.deque([1, 2, 3], maxlen=5),
    ]
    values["stdlib/datetime"] = [
        datetime.datetime(2024, 2, 29, 12, 30, 45, 123456),
        datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
        datetime.date(1999, 12, 31),
        datetime.time(23, 59, 59, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        datetime.timedelta(days=-3, seconds=5),
    ]
    values["stdlib/numbers"] = [
        decimal.Decimal("3.14159"),
        decimal.Decimal("-Infinity"),
        fractions.Fraction(22, 7),
        complex(1, -2),
    ]
    values["stdlib/misc"] = [
        uuid.UUID(int=0x1234567890ABCDEF1234567890ABCDEF),
        range(1, 10, 3),
        slice(1, None, -1),
        Ellipsis,
        NotImplemented,
        None,
        type(None),
        [int, float, str, bytes, object, type],
        [len, print, max, math.sqrt, os.path.join],
    ]
    for name, value in recursive_values().items():
        values[f"recursive/{name}"] = value
    return values


# --------------------------------------------------------------------------------------------
# Handcrafted pickles


def struct_u64(n):
    return n.to_bytes(8, "little")


def handcrafted():
    """(name, bytes, load kwargs) of pickles no modern pickler writes; each must load."""
    cases = []

    def add(name, data, **kwargs):
        cases.append((name, data, kwargs))

    # INT: booleans, signs, padding, base-0 parsing in _pickle.c vs int() in genops.
    for text in [
        b"00",
        b"01",
        b"0",
        b"1",
        b"-1",
        b"+7",
        b" 12",
        b"0010",
        b"-0",
        b"+1",
        b"1_000",
        b"2147483647",
        b"-2147483648",
        b"12345678901234567890",
        b"-99999999999999999999999999",
    ]:
        add(f"int/{text.decode()}", b"I" + text + b"\n.")
    add("int/crlf", b"I12\r\n.")
    add("int/list", b"(lp0\nI00\naI01\naI42\na.")
    # LONG: with and without L, huge, negative.
    for text in [
        b"0L",
        b"5",
        b"123L",
        b"-123L",
        b"123456789012345678901234567890L",
        b"-98765432109876543210L",
        b"2147483648",
        b"000L",
    ]:
        add(f"long/{text.decode()}", b"L" + text + b"\n.")
    # FLOAT text.
    for text in [
        b"1.5",
        b"-0.0",
        b"inf",
        b"-inf",
        b"nan",
        b"1e300",
        b"1E-5",
        b"3",
        b"1e-320",
        b"0.1000000000000000055511151231257827",
        b"1.7976931348623157e+308",
    ]:
        add(f"float/{text.decode()}", b"F" + text + b"\n.")
    # STRING, in every form CPython's escape decoding accepts, and Python 2's repr writes.
    strings = [
        rb"'abc'",
        rb'"abc"',
        rb"''",
        rb'""',
        rb"'it\'s'",
        rb'"it\'s"',
        rb"""'say "hi"'""",
        rb'"say \"hi\""',
        rb"'back\\slash'",
        rb"'\n\r\t'",
        rb"'\a\b\f\v'",
        rb"'\x00\x01\x7f'",
        rb"'\x41\x4a\x4A'",
        rb"'\0\00\000\7\77\177'",
        rb"'\101\102'",
        rb"'\0012'",
        rb"'unknown \q \z \8 \9 escapes'",
        rb"'\\n is not a newline'",
        b"'raw \x01 control \x1f bytes'",
        rb"'tab	inside'",
        b"'\x7f'",
    ]
    for i, text in enumerate(strings):
        add(f"string/{i}", b"S" + text + b"\n.")
    add("string/dict", b"(dp0\nS'a'\np1\nI1\nsS'b'\np2\n(lp3\nS'c\\n'\np4\nasg1\ng4\ns.")
    # BINSTRING / SHORT_BINSTRING (Python 2 str), latin-1 bytes.
    add("binstring/short", b"U\x03abc.")
    add("binstring/short_latin1", b"U\x04\x00\xe9\xff\n.", encoding="latin1")
    add("binstring/long", b"T\x05\x00\x00\x00hello.")
    add("binstring/long_latin1", b"T\x03\x00\x00\x00\x80\x81\x82.", encoding="latin1")
    add("binstring/empty", b"U\x00.")
    # UNICODE raw-unicode-escape forms, CRLF.
    for i, text in enumerate(
        [
            b"abc",
            b"\\u0041\\U0001F600",
            b"\xe9\xff",
            b"\\\\u0041",
            b"a\\b",
            b"\\ud800",
            b"\\udfff\\ud800",
            b"",
            b"abc\r",
            b"\\u005cn",
            b"\\",
        ]
    ):
        add(f"unicode/{i}", b"V" + text + b"\n.")
    # Memo forms, CRLF line endings.
    add("memo/crlf", b"(lp0\r\nI1\r\nag0\r\na.")
    add("memo/put_get", b"(lp1\nVx\np2\nag2\nag1\na.")
    add("memo/get_padded", b"(lp7\ng07\na.")
    add("memo/binput_longbinput", b"]q\x00r\x01\x00\x00\x00h\x00j\x01\x00\x00\x00\x86.")
    # GLOBAL / INST / OBJ / REDUCE / BUILD, Python 2 names.
    add("global/list", b"c__builtin__\nlist\n(tR.")
    add("global/set", b"\x80\x02c__builtin__\nset\nq\x00]q\x01(U\x01aq\x02U\x01bq\x03e\x85q\x04Rq\x05.")
    add(
        "global/copy_reg",
        b"ccopy_reg\n_reconstructor\n(c__main__\nPlain\nc__builtin__\nobject\nNtR(dS'a'\nI1\nsb.",
    )
    add("inst/list", b"(ibuiltins\nlist\n.")
    add("inst/args", b"(I1\nS'x'\ni__main__\nReduced\n.")
    add("inst/build", b"(i__main__\nPlain\n(dp0\nVa\nI5\nsb.")
    add("obj/list", b"(cbuiltins\nlist\no.")
    add("obj/plain", b"\x80\x01(c__main__\nPlain\nK\x01X\x01\x00\x00\x00bo.")
    # Stack manipulation CPython never writes: DUP, POP, POP_MARK.
    add("dup", b"(I1\n2t.")
    add("pop", b"I1\nI2\n0.")
    add("pop_mark", b"I3\n(I1\nI2\n1.")
    add("empty_list_append", b"]I1\na.")
    # Persistent ids.
    add("persid/text", b"Pabc\n.")
    add("persid/tuple_text", b"P('storage', 'FloatStorage', '0', 'cpu', 6)\n.")
    add("persid/binary", b"\x80\x02X\x03\x00\x00\x00pidQ.")
    add("persid/crlf", b"Pkey\r\n.")
    # 8-byte lengths (no pickler writes them for small data).
    add("binbytes8", b"\x80\x04\x8e\x03\x00\x00\x00\x00\x00\x00\x00abc.")
    add("binbytes8/empty", b"\x80\x04\x8e" + bytes(8) + b".")
    add("binunicode8", b"\x80\x04\x8d\x06\x00\x00\x00\x00\x00\x00\x00\xc3\xa9\xf0\x9f\x98\x80" + b".")
    add("binunicode8/surrogate", b"\x80\x04\x8d\x03\x00\x00\x00\x00\x00\x00\x00\xed\xa0\x80.")
    add("bytearray8", b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00\x00\xff.")
    add("bytearray8/empty", b"\x80\x05\x96" + bytes(8) + b".")
    add("binunicode/surrogate", b"X\x03\x00\x00\x00\xed\xbf\xbf.")
    add("short_binunicode/pair", b"\x80\x04\x8c\x06\xed\xa0\xbd\xed\xb8\x80.")
    # LONG1/LONG4 with non-minimal encodings.
    add("long1/empty", b"\x80\x02\x8a\x00.")
    add("long1/minus1_padded", b"\x80\x02\x8a\x03\xff\xff\xff.")
    add("long1/zero_padded", b"\x80\x02\x8a\x02\x00\x00.")
    add("long1/128", b"\x80\x02\x8a\x02\x80\x00.")
    add("long4/small", b"\x80\x02\x8b\x01\x00\x00\x00\x80.")
    add("long4/empty", b"\x80\x02\x8b\x00\x00\x00\x00.")
    # BININT family edge values.
    add("binint/neg", b"J\xff\xff\xff\xff.")
    add("binint/min", b"J\x00\x00\x00\x80.")
    add("binint1/255", b"K\xff.")
    add("binint2/65535", b"M\xff\xff.")
    add("binfloat/nan_payload", b"G\x7f\xf8\x00\x00\x00\x00\x00\x01.")
    add("binfloat/neg_nan", b"G\xff\xf8\x00\x00\x00\x00\x00\x00.")
    add("binfloat/neg_zero", b"G\x80\x00\x00\x00\x00\x00\x00\x00.")
    # Frames: one around everything, empty frames, a frame split between opcodes.
    add("frame/simple", b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00K\x01.")
    add("frame/empty_then_op", b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00N.")
    add("frame/two", b"\x80\x04\x95" + struct_u64(3) + b"]K\x01\x95" + struct_u64(2) + b"a.")
    # Mixed protocol markers; a later PROTO.
    add("proto/late", b"\x80\x02N0\x80\x03N.")
    # Trailing bytes after STOP (not part of the genops listing).
    add("trailing/garbage", b"K\x01.garbage after stop\xff")
    add("trailing/second_pickle", pickle.dumps([1, 2], 2) + pickle.dumps({"a": 1}, 4))
    add("trailing/newline", b"N.\n")
    return cases


# --------------------------------------------------------------------------------------------
# Library objects


def numpy_values(np):
    values = {}
    # No longdouble: its padding bytes are uninitialized memory, so its pickles vary run to run.
    dtypes = [
        "bool",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
        ">i4",
        ">f8",
        "<U7",
        "S5",
        "V4",
        "datetime64[ns]",
        "timedelta64[s]",
        "object",
    ]
    for name in dtypes:
        dtype = np.dtype(name)
        if dtype.kind == "O":
            arr = np.array([1, "two", None, [3], 4.5], dtype=object)
        elif dtype.kind in "US":
            arr = np.array(["a", "bc", "déf" if dtype.kind == "U" else "def", ""], dtype=dtype)
        elif dtype.kind == "V":
            arr = np.zeros(3, dtype=dtype)
        elif dtype.kind in "mM":
            arr = np.arange(4).astype(dtype)
        else:
            arr = (np.arange(12) % 7).astype(dtype).reshape(3, 4)
        values[f"array/{name}"] = arr
        values[f"scalar/{name}"] = arr.reshape(-1)[0] if arr.size else arr
    structured = np.dtype([("a", "<i4"), ("b", "<f8", (2,)), ("c", "S3"), ("d", [("e", "u1")])])
    values["array/structured"] = np.zeros(3, dtype=structured)
    values["array/0d"] = np.array(3.5)
    values["array/empty"] = np.empty((0, 3), dtype="float32")
    values["array/fortran"] = np.asfortranarray(np.arange(6, dtype="int16").reshape(2, 3))
    values["array/strided"] = np.arange(20, dtype="int32")[::3]
    readonly = np.arange(8, dtype="float64")
    readonly.flags.writeable = False
    values["array/readonly"] = readonly
    values["big/array"] = np.arange(17000, dtype="int32")  # several frames / a big buffer
    values["array/list"] = [np.arange(3), np.ones((2, 2)), np.arange(3)]
    values["masked"] = np.ma.array([1, 2, 3], mask=[False, True, False])
    values["matrix_like"] = {"w": np.eye(3, dtype="float32"), "b": np.zeros(3, dtype="float32")}
    values["scalars"] = [
        np.float64(1.5),
        np.float32(-0.0),
        np.int64(-7),
        np.uint8(255),
        np.bool_(True),
        np.str_("text"),
        np.bytes_(b"raw"),
        np.complex128(1 - 2j),
        np.datetime64("2024-01-01"),
    ]
    values["dtypes"] = [np.dtype("float32"), np.dtype(">i8"), structured]
    values["rng"] = np.random.default_rng(7)
    return values


def sklearn_values(np):
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    estimators = {
        "linear": LinearRegression().fit(x, x[:, 2]),
        "logistic": LogisticRegression(max_iter=200).fit(x, y),
        "tree": DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y),
        "forest": RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(x, y),
        "scaler": StandardScaler().fit(x),
        "pca": PCA(n_components=2).fit(x),
        "kmeans": KMeans(n_clusters=2, n_init=1, random_state=0).fit(x),
        "nb": GaussianNB().fit(x, y),
        "knn": KNeighborsClassifier(n_neighbors=3, algorithm="kd_tree").fit(x, y),
        "onehot": OneHotEncoder().fit([["a"], ["b"], ["c"]]),
        "pipeline": Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(x, y),
        "unfitted": LogisticRegression(C=0.5),
    }
    return estimators


def torch_values(torch):
    torch.manual_seed(0)
    values = {
        "float32": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "int64": torch.tensor([1, -2, 3]),
        "bool": torch.tensor([True, False]),
        "float16": torch.ones(3, dtype=torch.float16),
        "bfloat16": torch.zeros(2, dtype=torch.bfloat16),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "complex64": torch.tensor([1 + 2j], dtype=torch.complex64),
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 4),
        "transposed": torch.arange(6.0).reshape(2, 3).t(),
        "parameter": torch.nn.Parameter(torch.ones(2, 2)),
        "state_dict": torch.nn.Sequential(
            torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1)
        ).state_dict(),
        "meta": [torch.Size([2, 3]), torch.float32, torch.int8, torch.device("cpu")],
    }
    base = torch.arange(10.0)
    values["shared_storage"] = [base, base[2:5], base.view(2, 5)]
    return values


def stabilize_torch_keys(torch, data, obj):
    """Replaces legacy torch.save's address-derived storage keys by stable ones."""
    keys = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            keys.add(str(item.untyped_storage()._cdata).encode())
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    for i, key in enumerate(sorted(keys)):
        stable = str(i).rjust(len(key), "9").encode()
        if key in data:
            data = data.replace(key, stable)
    return data


def split_stream(data):
    """The consecutive pickles at the start of `data` (stops at the first non-pickle)."""
    pieces = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        start = stream.tell()
        try:
            for _ in pickletools.genops(stream):
                pass
        except Exception:
            break
        pieces.append(data[start : stream.tell()])
    return pieces


def emit_torch(corpus, torch):
    values = torch_values(torch)
    for name, obj in values.items():
        for proto in range(6):
            data = pickle.dumps(obj, protocol=proto)
            data = stabilize_torch_keys(torch, data, obj)
            check_loads(data)
            corpus.add(f"torch/pickle/{name}/p{proto}", data)
            if proto == 2:
                # The legacy torch.save stream embedded in each storage's reduce call.
                for op, arg, _pos in pickletools.genops(data):
                    if op.name in ("BINUNICODE", "BINBYTES") and len(arg) > 64:
                        inner = arg.encode("latin-1") if isinstance(arg, str) else arg
                        for i, piece in enumerate(split_stream(inner)):
                            corpus.add(f"torch/pickle/{name}/legacy/{i}/{len(corpus.ids)}", piece)
        for proto in (2, 3, 4, 5):
            buf = io.BytesIO()
            torch.save(obj, buf, pickle_protocol=proto)
            with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as archive:
                for member in archive.namelist():
                    if member.endswith(".pkl"):
                        corpus.add(f"torch/save/{name}/p{proto}/{member}", archive.read(member))
        buf = io.BytesIO()
        torch.save(obj, buf, _use_new_zipfile_serialization=False)
        data = stabilize_torch_keys(torch, buf.getvalue(), obj)
        for i, piece in enumerate(split_stream(data)):
            corpus.add(f"torch/legacy/{name}/{i}", piece)


def torch_style_values():
    """Hand-built torch.save data.pkl contents, with rebuild calls and persistent storages."""
    rebuild = Global("torch._utils", "_rebuild_tensor_v2")
    rebuild_param = Global("torch._utils", "_rebuild_parameter")
    odict = Global("collections", "OrderedDict")

    def tensor(key, dtype="FloatStorage", shape=(2, 3), offset=0):
        numel = math.prod(shape)
        stride = tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))
        return Call(rebuild, FakeStorage(dtype, key, numel), offset, shape, stride, False, Call(odict))

    weight = tensor("0")
    values = {
        "tensor": tensor("0"),
        "state_dict": collections.OrderedDict(
            [
                ("fc.weight", weight),
                ("fc.bias", tensor("1", shape=(2,))),
                ("emb.weight", tensor("2", "LongStorage", (4, 1))),
                ("tied.weight", weight),
            ]
        ),
        "parameter": Call(rebuild_param, tensor("0", "HalfStorage", (3,)), True, Call(odict)),
        "checkpoint": {
            "epoch": 3,
            "model": collections.OrderedDict([("w", tensor("0", "BFloat16Storage", (1,)))]),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0]}]},
        },
        "hostile": Call(Global("os", "system"), "echo hi"),
        "storage_views": [tensor("0", offset=k) for k in range(4)],
    }
    return values


def emit_extensions(corpus):
    codes = {ExtA: 0xF0, ExtB: 0x1234, ExtC: 0x7FFFFFF0}
    for cls, code in codes.items():
        copyreg.add_extension(cls.__module__, cls.__qualname__, code)
    try:
        values = {
            "classes": [ExtA, ExtB, ExtC],
            "instances": [ExtA(), ExtB(5), ExtC(), ExtB(6)],
            "nested": {"a": ExtA, "b": [ExtB(), ExtC]},
        }
        for name, value in values.items():
            for proto in range(6):
                data = pickle.dumps(value, protocol=proto)
                check_loads(data)
                corpus.add(f"ext/{name}/p{proto}", data)
                corpus.add(f"ext/{name}/py{proto}", pickle._dumps(value, protocol=proto))
    finally:
        for cls, code in codes.items():
            copyreg.remove_extension(cls.__module__, cls.__qualname__, code)
        copyreg.clear_extension_cache()


def emit_buffers(corpus):
    values = {
        "writable": [pickle.PickleBuffer(bytearray(b"writable"))],
        "readonly": [pickle.PickleBuffer(b"readonly")],
        "mixed": [pickle.PickleBuffer(bytearray(b"rw")), pickle.PickleBuffer(b"ro"), b"inband"],
        "memoryview_slice": [pickle.PickleBuffer(memoryview(bytearray(range(64)))[8:40])],
    }
    for name, value in values.items():
        for proto in (5,):
            corpus.add(f"buffer/{name}/inband", pickle.dumps(value, protocol=proto))
            buffers = []
            corpus.add(
                f"buffer/{name}/oob", pickle.dumps(value, protocol=proto, buffer_callback=buffers.append)
            )
            # A callback returning true keeps the buffer in band.
            corpus.add(
                f"buffer/{name}/callback_true",
                pickle.dumps(value, protocol=proto, buffer_callback=lambda b: True),
            )
            buffers = []
            corpus.add(
                f"buffer/{name}/py_oob", pickle._dumps(value, protocol=proto, buffer_callback=buffers.append)
            )


def emit_persistent(corpus):
    values = {
        "text": [Persistent("key0"), 1, Persistent("key1")],
        "tuple": {"w": Persistent(("storage", "FloatStorage", "0", "cpu", 6))},
        "int": [Persistent(17)],
    }
    for name, value in values.items():
        for proto in range(6):
            out = io.BytesIO()
            PersistentPickler(out, protocol=proto).dump(value)
            check_loads(out.getvalue())
            corpus.add(f"persistent/{name}/p{proto}", out.getvalue())


def try_import(name):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return __import__(name)
    except Exception as exc:  # ImportError, or a broken install
        print(
            f"gen_differential_corpus: {name} not usable ({exc.__class__.__name__}: {exc})", file=sys.stderr
        )
        return None


def main():
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")
    gc.disable()  # a short-lived script: collection pauses cost more than the memory
    rng = random.Random(SEED)
    used = []
    with open(sys.argv[1], "w", encoding="ascii") as out:
        corpus = Corpus(out)

        for name, value in special_values().items():
            if name.startswith("big/"):
                # Large values in a few protocols only: they dominate the corpus size.
                corpus.dumps(f"special/{name}", value, protocols=(5,), oob=True)
            else:
                corpus.dumps(f"special/{name}", value, python_pickler=True)

        for name, data, kwargs in handcrafted():
            try:
                check_loads(data, **kwargs)
            except Exception as exc:
                raise ValueError(f"handcrafted pickle {name} does not load: {exc!r}") from exc
            corpus.add(f"hand/{name}", data)

        emit_extensions(corpus)
        emit_buffers(corpus)
        emit_persistent(corpus)

        for name, value in torch_style_values().items():
            for proto in range(6):
                corpus.add(f"torch_style/{name}/p{proto}", free_dumps(value, proto))

        np = try_import("numpy")
        if np is not None:
            used.append(f"numpy {np.__version__}")
            np.random.seed(0)
            for name, value in numpy_values(np).items():
                protocols = (5,) if name.startswith("big/") else range(6)
                corpus.dumps(f"numpy/{name}", value, protocols=protocols, oob=True)
            sklearn = try_import("sklearn")
            if sklearn is not None:
                used.append(f"scikit-learn {sklearn.__version__}")
                for name, value in sklearn_values(np).items():
                    corpus.dumps(f"sklearn/{name}", value, oob=True)
        torch = try_import("torch")
        if torch is not None:
            used.append(f"torch {torch.__version__}")
            emit_torch(corpus, torch)

        # Random nested values until the corpus is big enough, whatever was importable.
        i = 0
        while corpus.count < MIN_PICKLES + 600 or i < 500:
            value = rand_obj(rng, rng.randrange(1, 5), [])
            protos = sorted(rng.sample(range(6), 3))
            corpus.dumps(f"random/{i}", value, protocols=protos, python_pickler=rng.random() < 0.2, oob=True)
            i += 1

    missing = sorted({op.name for op in pickletools.opcodes} - set(corpus.opnames))
    print(
        f"gen_differential_corpus: {corpus.count} pickles, "
        f"{sum(corpus.opnames.values())} opcodes; libraries: {', '.join(used) or 'none'}; "
        f"opcodes never produced: {', '.join(missing) or 'none'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

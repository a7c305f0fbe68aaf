//! Roles: every use of an allowed name is checked against the role its real pickles give it.
//! Each rule has its attack, and where there is an obvious way around the rule, that too.

use picklefence::{analyze_reader, analyze_slice, FindingKind, Options, Policy, PolicyError};

/// What pushes one value onto the assembler's stack.
type Push = fn(P) -> P;

/// A tiny pickle assembler (protocol 4 opcodes).
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn new() -> P {
        P(vec![0x80, 4])
    }
    fn op(mut self, bytes: &[u8]) -> P {
        self.0.extend_from_slice(bytes);
        self
    }
    fn s(mut self, text: &str) -> P {
        self.0.push(0x8c);
        self.0.push(text.len() as u8); // test strings are short
        self.0.extend_from_slice(text.as_bytes());
        self
    }
    fn g(self, module: &str, name: &str) -> P {
        self.s(module).s(name).op(&[0x93])
    }
    fn int(mut self, v: i32) -> P {
        self.0.push(b'J');
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> P {
        self.0.push(b'C');
        self.0.push(b.len() as u8); // test payloads are short
        self.0.extend_from_slice(b);
        self
    }
    fn mark(self) -> P {
        self.op(b"(")
    }
    fn tuple(self) -> P {
        self.op(b"t")
    }
    fn reduce(self) -> P {
        self.op(b"R")
    }
    fn newobj(self) -> P {
        self.op(b")\x81")
    }
    fn build(self) -> P {
        self.op(b"b")
    }
    fn empty_dict(self) -> P {
        self.op(b"}")
    }
    /// `{k: v, ...}` from (key, builder) pairs, pushed as a dict built by SETITEMS.
    fn dict(self, items: &[(&str, Push)]) -> P {
        let mut p = self.empty_dict().mark();
        for (k, v) in items {
            p = v(p.s(k));
        }
        p.op(b"u")
    }
    fn put(mut self, key: u8) -> P {
        self.0.extend_from_slice(&[b'q', key]);
        self
    }
    fn get(mut self, key: u8) -> P {
        self.0.extend_from_slice(&[b'h', key]);
        self
    }
    fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

/// The finding kinds of a pickle under the default policy, checked to agree between the slice
/// (fast path) and the stream readings.
fn kinds(data: &[u8]) -> Vec<FindingKind> {
    let policy = Policy::default();
    let slice = analyze_slice(data, &policy, &Options::default());
    let stream = analyze_reader(data, &policy, &Options::default());
    assert_eq!(slice.findings, stream.findings, "slice and stream disagree");
    slice
        .findings
        .iter()
        .filter(|f| f.is_violation())
        .map(|f| f.kind)
        .collect()
}

fn assert_clean(data: &[u8]) {
    let report = analyze_slice(data, &Policy::default(), &Options::default());
    assert!(report.is_safe(), "{:#?}", report.findings);
    assert_eq!(kinds(data), vec![]);
}

fn assert_kind(data: &[u8], kind: FindingKind) {
    let found = kinds(data);
    assert!(found.contains(&kind), "expected {kind:?}, found {found:?}");
}

#[test]
fn a_reconstructed_class_is_not_called() {
    // NEWOBJ + BUILD is how it is pickled...
    let ok = P::new()
        .g("pandas", "DatetimeTZDtype")
        .newobj()
        .dict(&[("unit", |p| p.s("ns"))])
        .build()
        .stop();
    assert_clean(&ok);
    // ...REDUCE with chosen arguments runs its constructor.
    let bad = P::new()
        .g("pandas", "DatetimeTZDtype")
        .mark()
        .s("ns")
        .s("dateutil//etc/passwd")
        .tuple()
        .reduce()
        .stop();
    assert_kind(&bad, FindingKind::RoleViolation);
    // OBJ with arguments is a call too.
    let obj = P::new()
        .mark()
        .g("pandas", "DatetimeTZDtype")
        .s("ns")
        .op(b"o")
        .stop();
    assert_kind(&obj, FindingKind::RoleViolation);
}

#[test]
fn a_call_is_not_constructed_and_a_class_is_not_stored() {
    assert_kind(
        &P::new().g("collections", "OrderedDict").newobj().stop(),
        FindingKind::RoleViolation,
    );
    // A reconstructed class stored where the library may call it later.
    let stored = P::new()
        .g(
            "sklearn.preprocessing._function_transformer",
            "FunctionTransformer",
        )
        .newobj()
        .dict(&[("func", |p| p.g("transformers.training_args", "TrainingArguments"))])
        .build()
        .stop();
    assert_kind(&stored, FindingKind::RoleViolation);
    // A value is fine there.
    let value = P::new()
        .g(
            "sklearn.preprocessing._function_transformer",
            "FunctionTransformer",
        )
        .newobj()
        .dict(&[("func", |p| p.g("numpy", "log1p"))])
        .build()
        .stop();
    assert_clean(&value);
    // A value allowed only under one key is refused under another.
    let keyed = P::new()
        .g(
            "sklearn.preprocessing._function_transformer",
            "FunctionTransformer",
        )
        .newobj()
        .dict(&[("func", |p| p.g("sklearn.cluster._kmeans", "_kmeans_single_lloyd"))])
        .build()
        .stop();
    assert_kind(&keyed, FindingKind::RoleViolation);
}

#[test]
fn one_build_of_plain_state() {
    let twice = P::new()
        .g("argparse", "Namespace")
        .newobj()
        .dict(&[("a", |p| p.int(1))])
        .build()
        .dict(&[("b", |p| p.int(2))])
        .build()
        .stop();
    assert_kind(&twice, FindingKind::BuildViolation);
    let special = P::new()
        .g("argparse", "Namespace")
        .newobj()
        .dict(&[("__setstate__", |p| p.g("numpy", "mean"))])
        .build()
        .stop();
    assert_kind(&special, FindingKind::StateViolation);
    // A state that is not a dict of attributes.
    let tuple = P::new()
        .g("argparse", "Namespace")
        .newobj()
        .int(1)
        .int(2)
        .op(b"\x86")
        .build()
        .stop();
    assert_kind(&tuple, FindingKind::StateViolation);
    // The way around: change the state dict after the BUILD (a class may keep it).
    let later = P::new()
        .g("argparse", "Namespace")
        .newobj()
        .empty_dict()
        .put(1)
        .build()
        .get(1)
        .s("predict")
        .g("numpy", "mean")
        .op(b"s")
        .op(b"0")
        .stop();
    assert_kind(&later, FindingKind::BuildViolation);
}

#[test]
fn a_shared_result_is_not_built() {
    // numpy.dtype(..., copy=False) returns the process-wide descriptor.
    let shared = P::new()
        .g("numpy", "dtype")
        .s("f8")
        .op(b"\x89\x89\x87")
        .reduce()
        .stop();
    assert_kind(&shared, FindingKind::ArgumentViolation);
    // An enum member is the shared member.
    let member = P::new()
        .g("transformers.trainer_utils", "IntervalStrategy")
        .s("steps")
        .op(b"\x85")
        .reduce()
        .dict(&[("_value_", |p| p.s("no"))])
        .build()
        .stop();
    assert_kind(&member, FindingKind::BuildViolation);
    // A fresh dtype whose flags claim objects on a float kind: raw bytes read as pointers.
    let flags = P::new()
        .g("numpy", "dtype")
        .s("f8")
        .op(b"\x89\x88\x87")
        .reduce()
        .mark()
        .int(3)
        .s("<")
        .op(b"NNN")
        .int(-1)
        .int(-1)
        .int(63)
        .tuple()
        .build()
        .stop();
    assert_kind(&flags, FindingKind::StateViolation);
}

#[test]
fn materialising_constructors_take_bounded_data() {
    let range = P::new()
        .g("builtins", "set")
        .g("builtins", "range")
        .int(1_000_000_000)
        .op(b"\x85")
        .reduce()
        .op(b"\x85")
        .reduce()
        .stop();
    assert_kind(&range, FindingKind::ArgumentViolation);
    let fraction = P::new()
        .g("fractions", "Fraction")
        .s("1e1000000000")
        .op(b"\x85")
        .reduce()
        .stop();
    assert_kind(&fraction, FindingKind::ArgumentViolation);
    let decimal = P::new()
        .g("decimal", "Decimal")
        .s("1e999999999")
        .op(b"\x85")
        .reduce()
        .stop();
    assert_kind(&decimal, FindingKind::ArgumentViolation);
    let ok = P::new()
        .g("decimal", "Decimal")
        .s("1.5E+10")
        .op(b"\x85")
        .reduce()
        .stop();
    assert_clean(&ok);
    let bytearray = P::new()
        .g("builtins", "bytearray")
        .int(1 << 30)
        .op(b"\x85")
        .reduce()
        .stop();
    assert_kind(&bytearray, FindingKind::ArgumentViolation);
}

fn odict(p: P) -> P {
    p.g("collections", "OrderedDict").op(b")").reduce()
}

#[test]
fn tensor_views_stay_inside_their_storage() {
    /// `_rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', numel), offset, size, stride,
    /// False, OrderedDict())`.
    fn args6(numel: i32, offset: i32, size: &[i32], stride: &[i32]) -> Vec<u8> {
        let mut p = P::new().g("torch._utils", "_rebuild_tensor_v2").mark();
        p = p
            .mark()
            .s("storage")
            .g("torch", "FloatStorage")
            .s("0")
            .s("cpu")
            .int(numel)
            .tuple()
            .op(b"Q");
        p = p.int(offset).mark();
        for d in size {
            p = p.int(*d);
        }
        p = p.tuple().mark();
        for d in stride {
            p = p.int(*d);
        }
        p = odict(p.tuple().op(b"\x89"));
        p.tuple().reduce().stop()
    }
    assert_clean(&args6(12, 0, &[3, 4], &[4, 1]));
    assert_clean(&args6(12, 2, &[10], &[1]));
    assert_kind(&args6(12, 3, &[10], &[1]), FindingKind::ArgumentViolation);
    assert_kind(&args6(4, 0, &[2], &[100]), FindingKind::ArgumentViolation);
    assert_kind(&args6(0, 0, &[1 << 30], &[1]), FindingKind::ArgumentViolation);
}

#[test]
fn higher_order_entries_call_only_their_short_list() {
    // _rebuild_from_type_v2(func, Tensor, args, state) calls func(*args).
    let bad = P::new()
        .g("torch._tensor", "_rebuild_from_type_v2")
        .mark()
        .g("transformers.training_args", "TrainingArguments")
        .g("torch", "Tensor")
        .op(b")")
        .empty_dict()
        .tuple()
        .reduce()
        .stop();
    let found = kinds(&bad);
    assert!(
        found.contains(&FindingKind::ArgumentViolation) || found.contains(&FindingKind::RoleViolation),
        "{found:?}"
    );
    // The function on the list gets its own schema applied to the arguments handed on.
    let nested = P::new()
        .g("torch._tensor", "_rebuild_from_type_v2")
        .mark()
        .g("torch._utils", "_rebuild_tensor_v2")
        .g("torch", "Tensor")
        .mark()
        .s("not a storage")
        .tuple()
        .empty_dict()
        .tuple()
        .reduce()
        .stop();
    assert_kind(&nested, FindingKind::ArgumentViolation);
    // defaultdict calls its factory on every missing key.
    let factory = P::new()
        .g("collections", "defaultdict")
        .g("torch.nn.modules.transformer", "Transformer")
        .op(b"\x85")
        .reduce()
        .stop();
    assert_kind(&factory, FindingKind::ArgumentViolation);
    let list = P::new()
        .g("collections", "defaultdict")
        .g("builtins", "list")
        .op(b"\x85")
        .reduce()
        .stop();
    assert_clean(&list);
}

#[test]
fn getattr_of_one_attribute_of_one_class() {
    let zone = |attr: &str| {
        P::new()
            .g("builtins", "getattr")
            .g("zoneinfo", "ZoneInfo")
            .s(attr)
            .op(b"\x86")
            .reduce()
            .s("Europe/London")
            .int(1)
            .op(b"\x86")
            .reduce()
            .stop()
    };
    assert_clean(&zone("_unpickle"));
    assert_kind(&zone("from_file"), FindingKind::ArgumentViolation);
    let other = P::new()
        .g("builtins", "getattr")
        .g("pathlib", "Path")
        .s("_unpickle")
        .op(b"\x86")
        .reduce()
        .stop();
    assert_kind(&other, FindingKind::ArgumentViolation);
}

#[test]
fn hooks_stay_empty_even_when_filled_later() {
    fn module(hooks: fn(P) -> P) -> Vec<u8> {
        P::new()
            .g("torch.nn.modules.linear", "Identity")
            .newobj()
            .dict(&[("_forward_hooks", hooks)])
            .build()
            .stop()
    }
    assert_clean(&module(odict));
    fn filled(p: P) -> P {
        odict(p).mark().int(0).g("numpy", "mean").op(b"u")
    }
    assert_kind(&module(filled), FindingKind::StateViolation);
    // Around it: fill the (memoized) hook container after the BUILD that judged it empty.
    let later = P::new()
        .g("torch.nn.modules.linear", "Identity")
        .newobj()
        .empty_dict()
        .mark()
        .s("_forward_hooks");
    let later = odict(later)
        .put(7)
        .op(b"u")
        .build()
        .get(7)
        .mark()
        .int(0)
        .g("numpy", "mean")
        .op(b"u0")
        .stop();
    assert_kind(&later, FindingKind::BuildViolation);
}

#[test]
fn dispatch_strings_name_only_their_methods() {
    fn scorer(method: &str) -> Vec<u8> {
        P::new()
            .g("sklearn.metrics._scorer", "_Scorer")
            .newobj()
            .empty_dict()
            .mark()
            .s("_response_method")
            .s(method)
            .op(b"u")
            .build()
            .stop()
    }
    assert_clean(&scorer("predict_proba"));
    assert_kind(&scorer("fit"), FindingKind::StateViolation);
    // A list of method names, filled before and after it is set in the state.
    let stacking = P::new()
        .g("sklearn.ensemble._stacking", "StackingClassifier")
        .newobj()
        .empty_dict()
        .mark()
        .s("stack_method_")
        .op(b"]")
        .put(3)
        .op(b"u")
        .get(3)
        .s("unlink")
        .op(b"a0")
        .build()
        .stop();
    assert_kind(&stacking, FindingKind::StateViolation);
    // One method name per estimator: long lists are followed too, to the end.
    fn stacking_of(methods: &[&str]) -> Vec<u8> {
        let mut p = P::new()
            .g("sklearn.ensemble._stacking", "StackingClassifier")
            .newobj()
            .empty_dict()
            .mark()
            .s("stack_method_")
            .op(b"]")
            .mark();
        for method in methods {
            p = p.s(method);
        }
        p.op(b"e").op(b"u").build().stop()
    }
    let mut methods = vec!["predict_proba"; 40];
    assert_clean(&stacking_of(&methods));
    methods[33] = "unlink";
    assert_kind(&stacking_of(&methods), FindingKind::StateViolation);
    // Past what is followed, the list is unknown, and so refused.
    assert_kind(&stacking_of(&vec!["predict"; 1100]), FindingKind::StateViolation);
}

#[test]
fn item_keys_of_an_object_are_never_special_names() {
    // A mapping class may answer attribute lookups from its items, so BUILD would find
    // `__setstate__` among them.
    let special = odict(P::new())
        .mark()
        .s("__setstate__")
        .g("numpy", "mean")
        .op(b"u")
        .stop();
    assert_kind(&special, FindingKind::BuildViolation);
    let bunch = |key: Push| {
        key(P::new().g("sklearn.utils._bunch", "Bunch").newobj())
            .int(1)
            .op(b"s")
            .stop()
    };
    assert_clean(&bunch(|p| p.s("data")));
    assert_kind(&bunch(|p| p.s("__getstate__")), FindingKind::BuildViolation);
    // The way around: a key made at load time that compares equal to a special name (a numpy
    // `str_` scalar from its dtype and bytes).
    assert_kind(
        &bunch(|p| {
            p.g("numpy._core.multiarray", "scalar")
                .g("numpy", "dtype")
                .s("U12")
                .op(b"\x85")
                .reduce()
                .bytes(b"__setstate__")
                .op(b"\x86")
                .reduce()
        }),
        FindingKind::BuildViolation,
    );
    // Python 2 STRING keys in a state dict are read as the names they are.
    let py2 = |key: &[u8]| {
        P::new()
            .g("argparse", "Namespace")
            .newobj()
            .empty_dict()
            .op(b"S'")
            .op(key)
            .op(b"'\n")
            .int(1)
            .op(b"s")
            .build()
            .stop()
    };
    assert_clean(&py2(b"n_features"));
    assert_kind(&py2(b"__reduce_ex__"), FindingKind::StateViolation);
}

#[test]
fn object_arrays_hold_as_many_objects_as_their_shape() {
    fn array(n: i32, items: usize) -> Vec<u8> {
        let mut p = P::new()
            .g("numpy._core.multiarray", "_reconstruct")
            .g("numpy", "ndarray")
            .int(0)
            .op(b"\x85")
            .bytes(b"b")
            .op(b"\x87")
            .reduce()
            .mark()
            .int(1)
            .int(n)
            .op(b"\x85")
            .g("numpy", "dtype")
            .s("O8")
            .op(b"\x89\x88\x87")
            .reduce()
            .mark()
            .int(3)
            .s("|")
            .op(b"NNN")
            .int(-1)
            .int(-1)
            .int(63)
            .tuple()
            .build()
            .op(b"\x89]")
            .mark();
        for _ in 0..items {
            p = p.op(b"N");
        }
        p.op(b"e").tuple().build().stop()
    }
    assert_clean(&array(3, 3));
    assert_kind(&array(1 << 30, 3), FindingKind::StateViolation);
}

#[test]
fn opaque_tuples_fail_closed() {
    // A shape made before any import stays opaque (plain data is not kept): as a tensor size it
    // cannot be checked, so the call is refused.
    let early = P::new()
        .int(1 << 30)
        .op(b"\x85")
        .put(0)
        .op(b"0")
        .g("torch", "Size")
        .get(0)
        .op(b"\x85")
        .reduce()
        .stop();
    assert_kind(&early, FindingKind::ArgumentViolation);
    // A tuple too long to keep that hides a class: judged as stored when it is made.
    let mut p = P::new().mark();
    for _ in 0..300 {
        p = p.int(0);
    }
    let long = p
        .g("transformers.training_args", "TrainingArguments")
        .tuple()
        .stop();
    assert_kind(&long, FindingKind::RoleViolation);
}

#[test]
fn reconstructor_bases_are_builtins() {
    let base = |module: &str, name: &str| {
        P::new()
            .g("copyreg", "_reconstructor")
            .g("argparse", "Namespace")
            .g(module, name)
            .op(b"N\x87")
            .reduce()
            .stop()
    };
    assert_clean(&base("builtins", "object"));
    assert_kind(
        &base("numpy.random._pickle", "__generator_ctor"),
        FindingKind::ArgumentViolation,
    );
}

#[test]
fn users_extend_with_roles_and_never_past_the_hard_floor() {
    let base = Policy::default();
    assert!(matches!(
        base.with_allowed(["builtins.getattr"]),
        Err(PolicyError::Dangerous { .. })
    ));
    assert!(matches!(
        base.with_allowed(["os.system=call(str) -> value"]),
        Err(PolicyError::Dangerous { .. })
    ));
    let trusted = base.with_allowed_dangerous(["mypkg.run_anything"]).unwrap();
    assert!(trusted.roles("mypkg", "run_anything").unwrap().trusted);
    let roled = base
        .with_allowed([
            "mypkg.models.Net=reconstruct",
            "mypkg:make=call(str<=10) -> fresh",
        ])
        .unwrap();
    assert!(roled.roles("mypkg.models", "Net").unwrap().reconstruct.is_some());
    assert!(roled.roles("mypkg", "make").unwrap().call.is_some());
    assert!(matches!(
        base.with_allowed(["mypkg.Net=sometimes"]),
        Err(PolicyError::MalformedRole { .. })
    ));
    // A name allowed only as a verified call is not allowed by name alone.
    assert!(base.is_allowed("builtins", "getattr"));
    assert!(!base.is_allowed_by_name("builtins", "getattr"));
    assert!(base.is_allowed_by_name("collections", "OrderedDict"));
    // TOML: roles and the opt-in.
    let toml = r#"
        allow = ["mypkg.Net=reconstruct"]
        [[entry]]
        name = "mypkg:make"
        role = "call(str<=10) -> fresh"
        reason = "builds a Net from a name"
    "#;
    let policy = Policy::from_toml_str(toml).unwrap();
    assert_eq!(
        policy
            .roles("mypkg", "make")
            .unwrap()
            .call
            .as_ref()
            .unwrap()
            .reason,
        "builds a Net from a name"
    );
    assert!(matches!(
        Policy::from_toml_str("allow = [\"subprocess.run\"]"),
        Err(PolicyError::Dangerous { .. })
    ));
    assert!(Policy::from_toml_str("allow = [\"subprocess.run\"]\nallow_dangerous = true").is_ok());
}

/// `numpy.dtype(descr, False, True)`, as numpy pickles a dtype.
fn dtype(p: P, descr: &str) -> P {
    p.g("numpy", "dtype").s(descr).op(b"\x89\x88\x87").reduce()
}

/// BUILD `(3, '|', subarray, names, fields, elsize, alignment, flags)`, each part pushed by `parts`.
fn dtype_state(p: P, parts: Push, flags: i32) -> P {
    parts(p.mark().int(3).s("|"))
        .int(8)
        .int(1)
        .int(flags)
        .tuple()
        .build()
}

#[test]
fn dtype_flags_follow_the_kind_however_it_is_spelled() {
    let plain = |descr: &str, flags: i32| dtype_state(dtype(P::new(), descr), |p| p.op(b"NNN"), flags).stop();
    assert_clean(&plain("O8", 63));
    assert_clean(&plain("f8", 0));
    assert_kind(&plain("O8", 0), FindingKind::StateViolation);
    // The way around: an object dtype spelled so that its first letter is not 'O'.
    assert_kind(&plain("object", 0), FindingKind::StateViolation);
    assert_kind(&plain("|O", 0), FindingKind::StateViolation);
    // A structured dtype with an object field carries the object flags (numpy writes 27).
    fn structured(flags: i32, field_built: bool) -> Vec<u8> {
        let mut p = dtype(P::new(), "V8").mark().int(3).s("|").op(b"N");
        p = p.s("a").op(b"\x85").empty_dict().s("a");
        p = if field_built {
            dtype_state(dtype(p, "O8"), |p| p.op(b"NNN"), 63)
        } else {
            dtype(p, "V8")
        };
        p.int(0)
            .op(b"\x86s")
            .int(8)
            .int(1)
            .int(flags)
            .tuple()
            .build()
            .stop()
    }
    assert_clean(&structured(27, true));
    assert_kind(&structured(0, true), FindingKind::StateViolation);
    // A field dtype not built yet could still become one with objects: refused.
    assert_kind(&structured(0, false), FindingKind::StateViolation);
    // A recarray's dtype is made from the class numpy.record: a void kind, judged like 'V'.
    let record = |flags: i32| {
        let p = P::new()
            .g("numpy", "dtype")
            .g("numpy", "record")
            .op(b"\x89\x88\x87")
            .reduce();
        dtype_state(p, |p| p.op(b"NNN"), flags).stop()
    };
    assert_clean(&record(16));
    assert_kind(&record(63), FindingKind::StateViolation);
}

#[test]
fn dtype_fields_and_subarrays_stay_inside_the_items() {
    // numpy's dtype.__setstate__ checks neither: a field past the 8-byte items is read and
    // written past each item (an object array of that dtype writes pointers there at load).
    let field_at = |offset: i32| {
        let mut p = dtype(P::new(), "V8").mark().int(3).s("|").op(b"N");
        p = p.s("a").op(b"\x85").empty_dict().s("a");
        p = dtype_state(dtype(p, "f8"), |p| p.op(b"NNN"), 0);
        p.int(offset)
            .op(b"\x86s")
            .int(8)
            .int(1)
            .int(16)
            .tuple()
            .build()
            .stop()
    };
    assert_clean(&field_at(0));
    assert_kind(&field_at(1), FindingKind::StateViolation);
    assert_kind(&field_at(1 << 20), FindingKind::StateViolation);
    assert_kind(&field_at(-8), FindingKind::StateViolation);
    // A field that is not (dtype, offset): its extent cannot be read.
    let not_a_field = dtype(P::new(), "V8")
        .mark()
        .int(3)
        .s("|")
        .op(b"N")
        .s("a")
        .op(b"\x85")
        .empty_dict()
        .s("a")
        .s("f8")
        .int(0)
        .op(b"\x86s")
        .int(8)
        .int(1)
        .int(16)
        .tuple()
        .build()
        .stop();
    assert_kind(&not_a_field, FindingKind::StateViolation);
    // A subarray of `count` f8 items in 8-byte items.
    let subarray = |count: i32| {
        let p = dtype(P::new(), "V8").mark().int(3).s("|");
        let p = dtype_state(dtype(p, "f8"), |p| p.op(b"NNN"), 0);
        p.int(count)
            .op(b"\x85\x86NN")
            .int(8)
            .int(8)
            .int(0)
            .tuple()
            .build()
            .stop()
    };
    assert_clean(&subarray(1));
    assert_kind(&subarray(1 << 20), FindingKind::StateViolation);
}

#[test]
fn a_state_is_a_dict_not_a_mapping_object() {
    // _new_Index(Index, state): the state's keys are keyword arguments, judged by the rules.
    fn index(state: Push) -> Vec<u8> {
        state(
            P::new()
                .g("pandas.core.indexes.base", "_new_Index")
                .g("pandas.core.indexes.base", "Index"),
        )
        .op(b"\x86")
        .reduce()
        .stop()
    }
    assert_clean(&index(|p| p.dict(&[("name", |p| p.s("a"))])));
    assert_kind(
        &index(|p| p.dict(&[("dtype", |p| p.s("datetime64[ns, dateutil//etc/passwd]"))])),
        FindingKind::ArgumentViolation,
    );
    // The way around: the same keys in an OrderedDict object.
    assert_kind(
        &index(|p| {
            odict(p)
                .mark()
                .s("dtype")
                .s("datetime64[ns, dateutil//etc/passwd]")
                .op(b"u")
        }),
        FindingKind::ArgumentViolation,
    );
    // Or a str made at load time (numpy's str_ scalar) under the watched key.
    assert_kind(
        &index(|p| {
            dtype(
                p.empty_dict().s("dtype").g("numpy._core.multiarray", "scalar"),
                "U4",
            )
            .bytes(b"a\0\0\0b\0\0\0c\0\0\0d\0\0\0")
            .op(b"\x86")
            .reduce()
            .op(b"s")
        }),
        FindingKind::ArgumentViolation,
    );
}

/// The persistent id of a 4-element float storage (`torch.save`'s record), loaded by BINPERSID.
fn float_storage(p: P) -> P {
    p.mark()
        .s("storage")
        .g("torch", "FloatStorage")
        .s("0")
        .s("cpu")
        .int(4)
        .tuple()
        .op(b"Q")
}

#[test]
fn what_a_call_was_given_does_not_change_afterwards() {
    // _rebuild_tensor_v2(..., hooks=OrderedDict()) keeps the very dict as the tensor's hooks.
    fn tensor(after: Push) -> Vec<u8> {
        let p = float_storage(P::new().g("torch._utils", "_rebuild_tensor_v2").mark())
            .int(0)
            .int(4)
            .op(b"\x85")
            .int(1)
            .op(b"\x85\x89");
        after(odict(p).put(9).tuple().reduce()).stop()
    }
    assert_clean(&tensor(|p| p));
    assert_kind(
        &tensor(|p| p.get(9).mark().int(0).g("numpy", "mean").op(b"u0")),
        FindingKind::BuildViolation,
    );
    // BUILD of an argument after the call.
    assert_kind(
        &tensor(|p| p.get(9).dict(&[("a", |p| p.int(1))]).op(b"b0")),
        FindingKind::BuildViolation,
    );
}

#[test]
fn ranges_are_small_and_dict_bases_get_no_special_items() {
    let range = |n: i32| {
        P::new()
            .g("builtins", "range")
            .int(0)
            .int(n)
            .op(b"\x86")
            .reduce()
            .stop()
    };
    assert_clean(&range(100));
    assert_kind(&range(1 << 30), FindingKind::ArgumentViolation);
    // copyreg._reconstructor(cls, tuple, range(...)) materialises it in tuple.__new__.
    let reconstructor = |state: Push| {
        state(
            P::new()
                .g("copyreg", "_reconstructor")
                .mark()
                .g("sklearn.utils._bunch", "Bunch")
                .g("builtins", "dict"),
        )
        .tuple()
        .reduce()
        .stop()
    };
    assert_clean(&reconstructor(|p| p.dict(&[("data", |p| p.int(1))])));
    assert_kind(
        &reconstructor(|p| p.dict(&[("__setstate__", |p| p.g("numpy", "mean"))])),
        FindingKind::ArgumentViolation,
    );
    // The way around: dict.__init__ takes pairs from a list or tuple too, never judged.
    let pairs = |p: P| {
        p.op(b"]")
            .mark()
            .s("__array_interface__")
            .int(1)
            .op(b"\x86")
            .op(b"e")
    };
    assert_kind(&reconstructor(pairs), FindingKind::ArgumentViolation);
    assert_kind(
        &reconstructor(|p| p.s("__array_interface__").int(1).op(b"\x86\x85")),
        FindingKind::ArgumentViolation,
    );
    assert_clean(&reconstructor(|p| p.op(b"N")));
}

#[test]
fn sizes_used_at_first_use_are_bounded() {
    let upsample = |size: (i32, i32)| {
        P::new()
            .g("torch.nn.modules.upsampling", "Upsample")
            .newobj()
            .empty_dict()
            .s("size")
            .int(size.0)
            .int(size.1)
            .op(b"\x86s")
            .build()
            .stop()
    };
    assert_clean(&upsample((64, 64)));
    assert_kind(&upsample((60000, 60000)), FindingKind::StateViolation);
    let function_transformer = |kw_args: Push| {
        kw_args(
            P::new()
                .g(
                    "sklearn.preprocessing._function_transformer",
                    "FunctionTransformer",
                )
                .newobj()
                .empty_dict()
                .s("func")
                .g("numpy", "log1p")
                .op(b"s")
                .s("kw_args"),
        )
        .op(b"s")
        .build()
        .stop()
    };
    assert_clean(&function_transformer(|p| p.op(b"N")));
    assert_clean(&function_transformer(|p| {
        p.dict(&[("a_min", |p| p.int(0)), ("axis", |p| p.int(1))])
    }));
    assert_kind(
        &function_transformer(|p| p.dict(&[("dtype", |p| p.s("U100000000"))])),
        FindingKind::StateViolation,
    );
}

#[test]
fn growth_iterations_and_patterns_used_at_transform_are_bounded() {
    fn with_state(module: &str, class: &str, key: &str, value: impl FnOnce(P) -> P) -> Vec<u8> {
        value(P::new().g(module, class).newobj().empty_dict().s(key))
            .op(b"s")
            .build()
            .stop()
    }
    let conv = |pads: Push| with_state("torch.nn.modules.conv", "Conv2d", "padding", pads);
    assert_clean(&conv(|p| p.int(1).int(1).op(b"\x86")));
    assert_clean(&conv(|p| p.s("same")));
    assert_kind(
        &conv(|p| p.int(60000).int(60000).op(b"\x86")),
        FindingKind::StateViolation,
    );
    // The way around a product of pads: zeros in the other entries (ZeroPad2d's 4-tuple).
    let pad4 = |l: i32, r: i32| {
        with_state("torch.nn.modules.padding", "ZeroPad2d", "padding", move |p| {
            p.mark().int(l).int(r).int(l).int(r).tuple()
        })
    };
    assert_clean(&pad4(1, 2));
    assert_kind(&pad4(0, 60000), FindingKind::StateViolation);
    let stride = |s: i32| {
        with_state("torch.nn.modules.conv", "ConvTranspose2d", "stride", move |p| {
            p.int(s).int(s).op(b"\x86")
        })
    };
    assert_clean(&stride(2));
    assert_kind(&stride(100000), FindingKind::StateViolation);
    // A scale factor applies to every spatial dimension: one number counts twice.
    let upsample = |scale: i32| {
        with_state(
            "torch.nn.modules.upsampling",
            "Upsample",
            "scale_factor",
            move |p| p.int(scale),
        )
    };
    assert_clean(&upsample(2));
    assert_clean(&upsample(16));
    assert_kind(&upsample(4096), FindingKind::StateViolation);
    let lda = |n: i32| {
        with_state(
            "sklearn.decomposition._lda",
            "LatentDirichletAllocation",
            "max_doc_update_iter",
            move |p| p.int(n),
        )
    };
    assert_clean(&lda(100));
    assert_kind(&lda(1_000_000_000), FindingKind::StateViolation);
    let poly = |n: i32| {
        with_state(
            "sklearn.preprocessing._polynomial",
            "PolynomialFeatures",
            "n_output_features_",
            move |p| p.int(n),
        )
    };
    assert_clean(&poly(10));
    assert_kind(&poly(2_000_000_000), FindingKind::StateViolation);
    // Item sizes of dtype strings: in a numpy.dtype call and as a plain attribute.
    let encoder = |dtype: &'static str| {
        with_state(
            "sklearn.preprocessing._encoders",
            "OneHotEncoder",
            "dtype",
            move |p| p.s(dtype),
        )
    };
    assert_clean(&encoder("U8"));
    assert_kind(&encoder("U500000000"), FindingKind::StateViolation);
    let call = |descr: &str| dtype(P::new(), descr).op(b"0N").stop();
    assert_clean(&call("U8"));
    assert_kind(&call("U500000000"), FindingKind::ArgumentViolation);
    assert_kind(&call("<S100000000"), FindingKind::ArgumentViolation);
    // _new_Index(RangeIndex, state): the range its state makes is bounded like range().
    let range_index = |stop: i32| {
        P::new()
            .g("pandas.core.indexes.base", "_new_Index")
            .g("pandas.core.indexes.range", "RangeIndex")
            .empty_dict()
            .mark()
            .s("start")
            .int(0)
            .s("stop")
            .int(stop)
            .s("step")
            .int(1)
            .s("name")
            .op(b"N")
            .op(b"u\x86")
            .reduce()
            .stop()
    };
    assert_clean(&range_index(1000));
    assert_kind(&range_index(1 << 30), FindingKind::ArgumentViolation);
    let nmf = |n: i32| with_state("sklearn.decomposition._nmf", "NMF", "max_iter", move |p| p.int(n));
    assert_clean(&nmf(200));
    assert_kind(&nmf(1_000_000_000), FindingKind::StateViolation);
    let vectorizer = |pattern: &'static str| {
        with_state(
            "sklearn.feature_extraction.text",
            "TfidfVectorizer",
            "token_pattern",
            move |p| p.s(pattern),
        )
    };
    for pattern in [
        r"(?u)\b\w\w+\b",
        r"(?u)\b\w+\b|[^\w\s]",
        r"\b[a-zA-Z]{2,}\b",
        r"[^\s(){}]+",
    ] {
        assert_clean(&vectorizer(pattern));
    }
    // Nested and alternating quantified groups, backreferences, stacked repeats.
    for pattern in [
        r"(a+)+$",
        r"((a|aa))*$",
        r"(\w|\d)+x",
        r"(?:[a-z]*)*x",
        r"(a)\1*",
        r"(?P<x>a)(?P=x)+",
        r"\w*\w*\w*x",
        r"(a{1,5}){1,9}",
        r"(a",
    ] {
        assert_kind(&vectorizer(pattern), FindingKind::StateViolation);
    }
}

#[test]
fn allocating_classes_are_values_only_where_their_records_hold_them() {
    // The legacy tar format's storage record: (key, location, storage class).
    let record = P::new()
        .s("0")
        .s("cpu")
        .g("torch", "FloatStorage")
        .op(b"\x87")
        .stop();
    assert_clean(&record);
    // Under an attribute a library may call it with a size: FloatStorage(3e9).
    fn transformer(func: impl FnOnce(P) -> P) -> Vec<u8> {
        func(
            P::new()
                .g(
                    "sklearn.preprocessing._function_transformer",
                    "FunctionTransformer",
                )
                .newobj()
                .empty_dict()
                .s("func"),
        )
        .op(b"s")
        .build()
        .stop()
    }
    assert_clean(&transformer(|p| p.g("numpy", "log1p")));
    for (module, name) in [
        ("torch", "FloatStorage"),
        ("torch", "FloatTensor"),
        ("numpy", "ndarray"),
        ("builtins", "bytearray"),
        ("builtins", "bytes"),
    ] {
        let data = transformer(|p| p.g(module, name));
        let report = analyze_slice(&data, &Policy::default(), &Options::default());
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.kind == FindingKind::RoleViolation),
            "{module}.{name}: {:?}",
            report.findings
        );
    }
}

#[test]
fn legacy_torch_storages_fit_in_what_follows_the_pickle() {
    // torch's legacy persistent_load allocates each declared storage before any data is read.
    let storages = |numels: &[i32], key_of: fn(usize) -> &'static str| {
        let mut p = P::new().mark();
        for (i, numel) in numels.iter().enumerate() {
            p = p
                .mark()
                .s("storage")
                .g("torch", "FloatStorage")
                .s(key_of(i))
                .s("cpu")
                .int(*numel)
                .op(b"N")
                .tuple()
                .op(b"Q");
        }
        p.op(b"l").stop()
    };
    let budget = |data: &[u8], remaining: u64| {
        let options = Options {
            stream_remaining: Some(remaining),
            ..Options::default()
        };
        analyze_slice(data, &Policy::default(), &options)
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Container)
    };
    let distinct: fn(usize) -> &'static str = |i| ["0", "1", "2"][i % 3];
    let same: fn(usize) -> &'static str = |_| "0";
    let two = storages(&[100, 100], distinct);
    assert!(!budget(&two, 800 + 1000));
    assert!(budget(&two, 700));
    // A key repeated (views of one storage) is allocated once.
    assert!(!budget(&storages(&[100, 100, 100], same), 500));
    // Unknown where the stream ends (a pipe): not judged here; the scanner judges the file.
    assert!(!analyze_slice(
        &storages(&[1 << 30], same),
        &Policy::default(),
        &Options::default()
    )
    .findings
    .iter()
    .any(|f| f.kind == FindingKind::Container));
}

#[test]
fn a_memo_key_from_an_earlier_pickle_is_refused() {
    // One unpickler reading a stream keeps its memo: pickle 2 calls what pickle 1 memoized.
    let first = P::new().g("pandas", "DatetimeTZDtype").put(0).op(b"0N").stop();
    let second = P::new().get(0).s("ns").s("UTC").op(b"\x86").reduce().stop();
    let stream = [first.clone(), second.clone()].concat();
    assert_kind(&stream, FindingKind::EarlierMemo);
    // The pre-scan of a second load() is told the memo is inherited.
    let options = Options {
        mode: picklefence::Mode::FirstPickle,
        memo_inherited: true,
        ..Options::default()
    };
    let report = analyze_slice(&second, &Policy::default(), &options);
    assert!(report.findings.iter().any(|f| f.kind == FindingKind::EarlierMemo));
    // A fresh unpickler raises there: only a malformed stream.
    let report = analyze_slice(&second, &Policy::default(), &Options::default());
    assert!(report
        .findings
        .iter()
        .all(|f| f.kind == FindingKind::MalformedPickle));
}

/// `functools.partial(new_block)` built with `(func, args, keywords, None)`, as pandas 1.3
/// writes each block, and called with `call_args` (pushed as one tuple).
fn block_partial(keywords: Push, call_args: Push) -> Vec<u8> {
    partial_call(("pandas.core.internals.blocks", "new_block"), keywords, call_args)
}

/// `functools.partial(func)` built with `(func, (), keywords, None)`, called with `call_args`.
fn partial_call(func: (&str, &str), keywords: Push, call_args: Push) -> Vec<u8> {
    let partial = P::new()
        .g("functools", "partial")
        .g(func.0, func.1)
        .put(0)
        .op(b"\x85")
        .reduce()
        .mark()
        .get(0)
        .op(b")");
    call_args(keywords(partial).op(b"N").tuple().build())
        .reduce()
        .stop()
}

#[test]
fn a_partial_is_judged_as_a_call_of_its_function() {
    let two_args: Push = |p| p.mark().s("values").int(0).tuple();
    let ndim: Push = |p| p.dict(&[("ndim", |p| p.int(2))]);
    assert_clean(&block_partial(ndim, two_args));
    assert_clean(&block_partial(|p| p.op(b"N"), two_args));
    // Keywords by the function's schema: named ones only, of their kinds.
    let unnamed: Push = |p| p.dict(&[("ndim", |p| p.int(2)), ("dtype", |p| p.s("f8"))]);
    assert_kind(&block_partial(unnamed, two_args), FindingKind::ArgumentViolation);
    let huge: Push = |p| p.dict(&[("ndim", |p| p.int(1 << 30))]);
    assert_kind(&block_partial(huge, two_args), FindingKind::ArgumentViolation);
    let klass: Push = |p| p.dict(&[("klass", |p| p.g("builtins", "float"))]);
    assert_kind(&block_partial(klass, two_args), FindingKind::ArgumentViolation);
    // Positional arguments: the partial's and the call's together, by the positional schema.
    let five: Push = |p| p.mark().s("v").int(0).int(2).op(b"N").int(5).tuple();
    assert_kind(&block_partial(ndim, five), FindingKind::ArgumentViolation);
    // Keywords changed after the BUILD judged them: the partial holds that very dict.
    let changed: Push = |p| {
        p.mark()
            .get(1)
            .s("klass")
            .g("builtins", "float")
            .op(b"s")
            .int(0)
            .tuple()
    };
    let kept: Push = |p| p.dict(&[("ndim", |p| p.int(2))]).put(1);
    assert_kind(&block_partial(kept, changed), FindingKind::BuildViolation);
    // Keywords in a dict made before the partial: the analyzer kept no items of it.
    let early = P::new()
        .op(b"]")
        .mark()
        .empty_dict()
        .put(1)
        .g("functools", "partial")
        .g("pandas.core.internals.blocks", "new_block")
        .put(0)
        .op(b"\x85")
        .reduce()
        .mark()
        .get(0)
        .op(b")")
        .get(1)
        .op(b"N")
        .tuple()
        .build()
        .mark()
        .s("v")
        .int(0)
        .tuple()
        .reduce()
        .op(b"e")
        .stop();
    assert_clean(&early); // an empty dict: no keywords at all
    let early_filled = {
        let mut data = early.clone();
        // The same, with the dict filled before the partial exists: `{}` -> `}(ndim 2u`.
        let at = data.iter().position(|&b| b == b'}').unwrap_or(0);
        let fill = P(Vec::new()).mark().s("ndim").int(2).op(b"u").0;
        data.splice(at + 1..at + 1, fill);
        data
    };
    assert_kind(&early_filled, FindingKind::ArgumentViolation);
    // Partials left without their BUILD keep the items of the dicts made meanwhile, bounded:
    // past the bound a partial's keywords are unreadable and refused, never kept at any cost.
    let flood: Push = |p| {
        let mut p = p.op(b"]").mark();
        for _ in 0..20_000 {
            p = p.empty_dict();
        }
        p.op(b"e0").dict(&[("ndim", |p| p.int(2))])
    };
    assert_kind(&block_partial(flood, two_args), FindingKind::ArgumentViolation);
    // The partial's function comes from its list only, and a call of it obeys the function's
    // own role (check_array may be stored, never called by the pickle).
    let other = partial_call(
        ("sklearn.utils.validation", "check_array"),
        |p| p.op(b"N"),
        |p| p.mark().s("v").tuple(),
    );
    assert_kind(&other, FindingKind::RoleViolation);
    // The function itself is never stored under an attribute, where a library would call it.
    let stored = P::new()
        .g("pandas.core.arrays.string_", "StringDtype")
        .newobj()
        .dict(&[("storage", |p| p.g("pandas.core.internals.blocks", "new_block"))])
        .build()
        .stop();
    assert_kind(&stored, FindingKind::RoleViolation);
}

#[test]
fn items_go_only_into_the_containers_that_take_them() {
    // An int8 array over a memoized bytearray (NumPy's protocol 5 form): the array is a view of
    // the bytearray's bytes, so items set into the bytearray afterwards rewrite the array (and
    // an Arrow offsets buffer made the same way) after it was checked.
    fn view_then(after: Push) -> Vec<u8> {
        let mut p = P::new().g("numpy._core.numeric", "_frombuffer").mark();
        p.0.push(0x96);
        p.0.extend_from_slice(&4u64.to_le_bytes());
        p.0.extend_from_slice(&[0, 1, 2, 3]);
        let p = dtype(p.put(7), "i1").int(4).op(b"\x85").s("C").tuple().reduce();
        after(p).stop()
    }
    assert_clean(&view_then(|p| p));
    let setitem = |p: P| p.get(7).int(0).int(100).op(b"s0");
    let setitems = |p: P| p.get(7).mark().int(0).int(100).int(1).int(100).op(b"u0");
    let append = |p: P| p.get(7).int(100).op(b"a0");
    let appends = |p: P| p.get(7).mark().int(100).op(b"e0");
    let additems = |p: P| p.get(7).mark().int(100).op(b"\x900");
    // The same bytearray through DUP, and the array view itself.
    let duplicated = |p: P| p.get(7).op(b"2").int(0).int(100).op(b"s00");
    let into_the_view = |p: P| p.op(b"2").int(0).int(100).op(b"s0");
    for after in [
        setitem,
        setitems,
        append,
        appends,
        additems,
        duplicated,
        into_the_view,
    ] {
        assert_kind(&view_then(after), FindingKind::BuildViolation);
    }
    // The same through `builtins.bytearray` (protocols 2 to 4) and into a bytes constant.
    let called = P::new()
        .g("builtins", "bytearray")
        .bytes(b"abcd")
        .op(b"\x85")
        .reduce()
        .int(0)
        .int(100)
        .op(b"s")
        .stop();
    assert_kind(&called, FindingKind::BuildViolation);
    assert_kind(
        &P::new().bytes(b"ab").int(0).int(1).op(b"s").stop(),
        FindingKind::BuildViolation,
    );
    // A list's item replaced by SETITEM, a dict given APPENDS, a persistent object (a torch
    // storage) given items: CPython would do the first and the last; no writer does any.
    assert_kind(
        &P::new().op(b"]").int(1).op(b"a").int(0).int(2).op(b"s").stop(),
        FindingKind::BuildViolation,
    );
    assert_kind(
        &P::new().empty_dict().mark().int(1).op(b"e").stop(),
        FindingKind::BuildViolation,
    );
    assert_kind(
        &float_storage(P::new()).int(0).int(1).op(b"s").stop(),
        FindingKind::BuildViolation,
    );
    // What writers do stays clean: items into lists, dicts and sets the pickle made.
    assert_clean(&P::new().op(b"]").mark().int(1).int(2).op(b"e").stop());
    assert_clean(&P::new().empty_dict().mark().s("a").int(2).op(b"u").stop());
    assert_clean(&P::new().op(b"\x8f").mark().int(1).int(2).op(b"\x90").stop());
}

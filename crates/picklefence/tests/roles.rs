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

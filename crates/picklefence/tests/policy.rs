//! The policy: the default ML allowlist, named policies, extension, TOML, and the
//! known-dangerous classifier.

use picklefence::policy::{parse_data, parse_entry, DEFAULT_POLICY_FILES, NAMED_POLICY_FILES};
use picklefence::{danger_reason, Policy, PolicyError};

/// Imports that reach code execution, the system, imports or attribute lookup. None may be
/// allowed by any shipped policy, and each must be recognised as dangerous.
const DANGEROUS: &[(&str, &str)] = &[
    // Operating system, processes, shells.
    ("os", "system"),
    ("os", "popen"),
    ("os", "execv"),
    ("os", "execvp"),
    ("os", "spawnl"),
    ("os", "fork"),
    ("os", "remove"),
    ("os", "unlink"),
    ("os", "putenv"),
    ("os", "environ"),
    ("os.path", "join"),
    ("posix", "system"),
    ("posix", "execv"),
    ("nt", "system"),
    ("nt", "startfile"),
    ("posixpath", "expanduser"),
    ("ntpath", "abspath"),
    ("subprocess", "Popen"),
    ("subprocess", "call"),
    ("subprocess", "run"),
    ("subprocess", "check_call"),
    ("subprocess", "check_output"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("_posixsubprocess", "fork_exec"),
    ("commands", "getoutput"),
    ("pty", "spawn"),
    ("_osx_support", "_read_output"),
    ("_osx_support", "_find_build_tool"),
    ("uuid", "_get_command_stdout"),
    ("uuid", "_ifconfig_getnode"),
    ("uuid", "getnode"),
    ("platform", "popen"),
    ("platform", "_syscmd_file"),
    ("asyncio", "create_subprocess_shell"),
    ("asyncio", "create_subprocess_exec"),
    ("asyncio.subprocess", "create_subprocess_shell"),
    ("asyncio.subprocess", "Process"),
    ("asyncio.unix_events", "_UnixSelectorEventLoop"),
    ("multiprocessing", "Process"),
    ("multiprocessing.context", "Process"),
    ("multiprocessing.popen_fork", "Popen"),
    ("concurrent.futures", "ProcessPoolExecutor"),
    ("threading", "Thread"),
    ("_thread", "start_new_thread"),
    ("signal", "signal"),
    ("atexit", "register"),
    // Python code.
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "compile"),
    ("builtins", "__import__"),
    ("builtins", "__build_class__"),
    ("builtins", "getattr"),
    ("builtins", "setattr"),
    ("builtins", "delattr"),
    ("builtins", "hasattr"),
    ("builtins", "open"),
    ("builtins", "input"),
    ("builtins", "breakpoint"),
    ("builtins", "globals"),
    ("builtins", "locals"),
    ("builtins", "vars"),
    ("builtins", "exit"),
    ("__builtin__", "eval"),
    ("__builtin__", "execfile"),
    ("__builtin__", "getattr"),
    ("__builtin__", "__import__"),
    ("runpy", "_run_code"),
    ("runpy", "run_path"),
    ("runpy", "run_module"),
    ("code", "InteractiveInterpreter"),
    ("code", "InteractiveConsole"),
    ("code", "interact"),
    ("codeop", "compile_command"),
    ("pdb", "run"),
    ("pdb", "runcall"),
    ("pdb", "Pdb"),
    ("bdb", "Bdb"),
    ("timeit", "timeit"),
    ("timeit", "Timer"),
    ("cProfile", "run"),
    ("cProfile", "runctx"),
    ("profile", "run"),
    ("trace", "Trace"),
    ("doctest", "run_docstring_examples"),
    ("pydoc", "pipepager"),
    ("pydoc", "locate"),
    ("pydoc", "pager"),
    ("marshal", "loads"),
    ("marshal", "load"),
    ("types", "FunctionType"),
    ("types", "CodeType"),
    ("types", "LambdaType"),
    ("types", "MethodType"),
    ("types", "new_class"),
    ("types", "ModuleType"),
    // Imports and attribute lookup.
    ("importlib", "import_module"),
    ("importlib", "__import__"),
    ("importlib.util", "spec_from_file_location"),
    ("importlib.machinery", "SourceFileLoader"),
    ("pkgutil", "resolve_name"),
    ("pkgutil", "get_data"),
    ("zipimport", "zipimporter"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("operator", "itemgetter"),
    ("_operator", "attrgetter"),
    ("functools", "partial"),
    ("functools", "reduce"),
    ("_functools", "partial"),
    ("sys", "modules"),
    ("sys", "settrace"),
    ("sys", "setprofile"),
    ("gc", "get_objects"),
    ("inspect", "getattr_static"),
    ("copyreg", "add_extension"),
    ("copy_reg", "add_extension"),
    // Native code.
    ("ctypes", "CDLL"),
    ("ctypes", "cdll"),
    ("ctypes", "PyDLL"),
    ("ctypes.util", "find_library"),
    ("_ctypes", "dlopen"),
    ("numpy.ctypeslib", "load_library"),
    ("torch.ops", "load_library"),
    ("torch.utils.cpp_extension", "load_inline"),
    // Files and network.
    ("shutil", "rmtree"),
    ("shutil", "copyfile"),
    ("shutil", "move"),
    ("tempfile", "mkstemp"),
    ("glob", "glob"),
    ("io", "open"),
    ("io", "FileIO"),
    ("_io", "open"),
    ("_io", "FileIO"),
    ("codecs", "open"),
    ("gzip", "open"),
    ("bz2", "open"),
    ("lzma", "open"),
    ("tarfile", "open"),
    ("zipfile", "ZipFile"),
    ("fileinput", "input"),
    ("linecache", "getline"),
    ("mmap", "mmap"),
    ("socket", "socket"),
    ("socket", "create_connection"),
    ("_socket", "socket"),
    ("ssl", "wrap_socket"),
    ("http.client", "HTTPConnection"),
    ("http.server", "HTTPServer"),
    ("urllib.request", "urlopen"),
    ("urllib.request", "urlretrieve"),
    ("urllib", "urlopen"),
    ("urllib2", "urlopen"),
    ("ftplib", "FTP"),
    ("smtplib", "SMTP"),
    ("xmlrpc.client", "ServerProxy"),
    ("webbrowser", "open"),
    ("webbrowser", "open_new"),
    ("logging.config", "listen"),
    ("logging.config", "fileConfig"),
    ("logging.config", "dictConfig"),
    ("logging", "FileHandler"),
    ("logging.handlers", "SocketHandler"),
    ("distutils.spawn", "spawn"),
    ("setuptools.sandbox", "run_setup"),
    ("pip", "main"),
    ("requests", "get"),
    ("huggingface_hub", "hf_hub_download"),
    // Nested loads.
    ("pickle", "loads"),
    ("pickle", "load"),
    ("pickle", "Unpickler"),
    ("pickle", "_Unpickler"),
    ("_pickle", "loads"),
    ("_pickle", "load"),
    ("cPickle", "loads"),
    ("dill", "loads"),
    ("cloudpickle", "loads"),
    ("shelve", "open"),
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("jsonpickle", "decode"),
    ("joblib", "load"),
    ("joblib.numpy_pickle", "load"),
    ("joblib.numpy_pickle", "NumpyUnpickler"),
    ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
    ("joblib.numpy_pickle_compat", "ZNDArrayWrapper"),
    ("joblib.memory", "Memory"),
    ("joblib", "Parallel"),
    ("pandas", "read_pickle"),
    ("pandas.io.pickle", "read_pickle"),
    ("pandas", "eval"),
    ("pandas.core.computation.eval", "eval"),
    ("sklearn.datasets", "fetch_openml"),
    ("scipy.io", "loadmat"),
    ("scipy.sparse", "load_npz"),
    // NumPy.
    ("numpy", "load"),
    ("numpy", "loads"),
    ("numpy", "fromfile"),
    ("numpy", "memmap"),
    ("numpy", "save"),
    ("numpy", "loadtxt"),
    ("numpy", "frompyfunc"),
    ("numpy", "vectorize"),
    ("numpy", "DataSource"),
    ("numpy.lib.npyio", "load"),
    ("numpy.lib._npyio_impl", "load"),
    ("numpy.lib.format", "read_array"),
    ("numpy.f2py", "compile"),
    ("numpy.f2py.f2py2e", "run_main"),
    ("numpy.testing._private.utils", "runstring"),
    ("numpy.testing", "assert_equal"),
    ("numpy.distutils.exec_command", "exec_command"),
    ("numpy.core.multiarray", "fromfile"),
    ("numpy._core.multiarray", "fromfile"),
    // PyTorch.
    ("torch", "load"),
    ("torch", "save"),
    ("torch", "from_file"),
    ("torch.storage", "_load_from_bytes"),
    ("torch.serialization", "load"),
    ("torch.serialization", "_load"),
    ("torch.serialization", "_legacy_load"),
    ("torch.serialization", "add_safe_globals"),
    ("torch.hub", "load"),
    ("torch.hub", "load_state_dict_from_url"),
    ("torch.hub", "download_url_to_file"),
    ("torch.jit", "load"),
    ("torch.jit._serialization", "load"),
    ("torch.jit", "script"),
    ("torch.fx.graph_module", "_forward_from_src"),
    ("torch.fx.graph_module", "reduce_graph_module"),
    ("torch.fx._symbolic_trace", "symbolic_trace"),
    ("torch._C", "_jit_pass_inline"),
    ("torch._C", "import_ir_module"),
    ("torch._C", "_load_for_lite_interpreter"),
    ("torch._C._jit_tree_views", "SourceRange"),
    ("torch._dynamo", "optimize"),
    ("torch._inductor.codecache", "PyCodeCache"),
    ("torch.package", "PackageImporter"),
    ("torch.package.package_importer", "PackageImporter"),
    ("torch.utils.benchmark", "Timer"),
    ("torch.distributed.rpc", "rpc_sync"),
    ("torch.multiprocessing", "spawn"),
    // Hugging Face.
    (
        "transformers.dynamic_module_utils",
        "get_class_from_dynamic_module",
    ),
    ("transformers", "AutoModel.from_pretrained"),
    (
        "transformers.models.auto.modeling_auto",
        "AutoModel.from_pretrained",
    ),
    // picklefence itself.
    ("picklefence", "deactivate"),
    ("picklefence._hook", "_state"),
    ("picklefence._native", "Policy"),
    // Dotted names walking from allowed objects into dangerous ones.
    ("torch", "serialization.os.system"),
    ("torch", "serialization.load"),
    ("torch", "_utils.torch.load"),
    ("numpy", "core.multiarray._reconstruct.__globals__"),
    ("numpy.core.multiarray", "_reconstruct.__globals__"),
    ("collections", "OrderedDict.__init__"),
    ("collections", "OrderedDict.__reduce__"),
    ("collections", "OrderedDict.__class__.__subclasses__"),
    ("builtins", "object.__subclasses__"),
    ("builtins", "dict.__class__"),
    ("torch.nn.modules.linear", "Linear.__init__.__globals__"),
    ("sklearn.tree._tree", "Tree.__reduce_ex__"),
    ("numpy.core.multiarray.os", "system"),
    ("numpy", "os.system"),
    ("pandas", "io.pickle.read_pickle"),
    ("zoneinfo", "ZoneInfo.__init_subclass__"),
    ("datetime", "sys.modules"),
];

/// A sample of what each family of the default allowlist must allow.
const MUST_ALLOW: &[(&str, &str)] = &[
    // Standard library data types and protocol helpers.
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("builtins", "range"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
    ("builtins", "object"),
    ("builtins", "bytes"),
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("collections", "Counter"),
    ("collections", "deque"),
    ("datetime", "datetime"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("decimal", "Decimal"),
    ("fractions", "Fraction"),
    ("uuid", "UUID"),
    ("_codecs", "encode"),
    ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"),
    ("argparse", "Namespace"),
    // NumPy under both package layouts.
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy", "float64"),
    ("numpy", "int64"),
    ("numpy", "bool_"),
    ("numpy.dtypes", "Float64DType"),
    ("numpy.dtypes", "StrDType"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random.mtrand", "RandomState"),
    ("numpy.ma.core", "_mareconstruct"),
    ("numpy.ma.core", "MaskedArray"),
    ("numpy", "matrix"),
    ("numpy.matrixlib.defmatrix", "matrix"),
    // PyTorch: weights-only globals, nn modules.
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_sparse_tensor"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.serialization", "_get_layout"),
    ("torch", "FloatStorage"),
    ("torch", "BFloat16Storage"),
    ("torch.storage", "UntypedStorage"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch", "float32"),
    ("torch", "bfloat16"),
    ("torch", "per_tensor_affine"),
    ("torch.nn.parameter", "Parameter"),
    ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.conv", "Conv2d"),
    ("torch.nn.modules.activation", "ReLU"),
    ("torch.nn.modules.rnn", "LSTM"),
    ("torch.nn.modules.transformer", "TransformerEncoderLayer"),
    ("torch.nn.modules.sparse", "Embedding"),
    // scikit-learn estimators and internals.
    ("sklearn.linear_model._logistic", "LogisticRegression"),
    ("sklearn.ensemble._forest", "RandomForestClassifier"),
    (
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting",
        "HistGradientBoostingClassifier",
    ),
    ("sklearn.tree._classes", "DecisionTreeClassifier"),
    ("sklearn.tree._tree", "Tree"),
    ("sklearn.pipeline", "Pipeline"),
    ("sklearn.preprocessing._data", "StandardScaler"),
    ("sklearn.svm._classes", "SVC"),
    ("sklearn.neighbors._kd_tree", "KDTree"),
    ("sklearn._loss.loss", "HalfBinomialLoss"),
    ("sklearn._loss.link", "LogitLink"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    // pandas, under pandas 3 and earlier module paths.
    ("pandas", "DataFrame"),
    ("pandas.core.frame", "DataFrame"),
    ("pandas.core.series", "Series"),
    ("pandas.core.internals.managers", "BlockManager"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"),
    ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
    ("pandas.core.arrays.categorical", "Categorical"),
    ("pandas.core.dtypes.dtypes", "CategoricalDtype"),
    // scipy.sparse.
    ("scipy.sparse._csr", "csr_matrix"),
    ("scipy.sparse._csr", "csr_array"),
    ("scipy.sparse._coo", "coo_matrix"),
    ("scipy.sparse.csr", "csr_matrix"),
    // Hugging Face training arguments.
    ("transformers.training_args", "TrainingArguments"),
    ("transformers.trainer_utils", "IntervalStrategy"),
    ("transformers.training_args", "OptimizerNames"),
    ("accelerate.utils.dataclasses", "DistributedType"),
    ("trl.trainer.sft_config", "SFTConfig"),
];

fn shipped_policies() -> Vec<Policy> {
    Policy::named_policies()
        .iter()
        .filter_map(|name| Policy::named(name).ok())
        .collect()
}

#[test]
fn dangerous_list_is_long() {
    assert!(DANGEROUS.len() >= 150, "{}", DANGEROUS.len());
    assert_eq!(shipped_policies().len(), Policy::named_policies().len());
}

/// Dangerous names a shipped policy allows only as a call whose arguments the analyzer
/// verifies (never by name alone).
const VERIFIED_CALLS: &[(&str, &str)] = &[
    ("builtins", "getattr"),
    ("functools", "partial"),
    ("torch.storage", "_load_from_bytes"),
];

#[test]
fn no_shipped_policy_allows_a_dangerous_import() {
    for policy in shipped_policies() {
        for &(module, name) in DANGEROUS {
            assert!(
                !policy.is_allowed_by_name(module, name),
                "policy {} allows {module}:{name} by name",
                policy.name()
            );
            if policy.is_allowed(module, name) {
                assert!(VERIFIED_CALLS.contains(&(module, name)), "{module}:{name}");
                let roles = policy.roles(module, name).unwrap();
                assert!(
                    roles.call.is_some() && roles.value.is_none() && roles.reconstruct.is_none(),
                    "{module}:{name} has a role beyond a verified call: {roles:?}"
                );
            }
        }
    }
}

#[test]
fn every_dangerous_import_has_a_reason() {
    let missing: Vec<String> = DANGEROUS
        .iter()
        .filter(|(module, name)| danger_reason(module, name).is_none())
        .map(|(module, name)| format!("{module}:{name}"))
        .collect();
    assert!(missing.is_empty(), "no danger_reason for {missing:?}");
}

#[test]
fn danger_reasons_read_as_sentences() {
    assert_eq!(danger_reason("os", "system"), danger_reason("posix", "system"));
    assert_eq!(danger_reason("builtins", "eval"), Some("evaluates Python code"));
    assert_eq!(danger_reason("pickle", "loads"), Some("loads a nested pickle"));
    assert_eq!(
        danger_reason("builtins", "__import__"),
        Some("imports arbitrary modules")
    );
    assert_eq!(
        danger_reason("commands", "getoutput"),
        Some("runs shell commands")
    );
    // Python 2 spellings are judged as CPython imports them.
    assert_eq!(
        danger_reason("__builtin__", "eval"),
        danger_reason("builtins", "eval")
    );
    assert_eq!(
        danger_reason("copy_reg", "add_extension"),
        danger_reason("copyreg", "add_extension")
    );
    for &(module, name) in DANGEROUS {
        let reason = danger_reason(module, name).unwrap_or_default();
        assert!(
            reason.chars().next().is_some_and(char::is_lowercase) && !reason.ends_with('.'),
            "{module}:{name}: {reason:?}"
        );
    }
}

#[test]
fn unknown_is_not_dangerous() {
    assert_eq!(danger_reason("mypkg.models", "Net"), None);
    assert_eq!(danger_reason("collections", "OrderedDict"), None);
    assert_eq!(danger_reason("torch._C._nn", "gelu"), None);
    assert_eq!(danger_reason("torch.serialization", "_get_layout"), None);
    assert_eq!(danger_reason("joblib.numpy_pickle", "NumpyArrayWrapper"), None);
    // Prefix matching is by module component, not by string prefix.
    assert_eq!(danger_reason("osmium", "Thing"), None);
    assert_eq!(danger_reason("codecs_extra", "Thing"), None);
    assert_eq!(danger_reason("traceback_utils", "Frame"), None);
}

#[test]
fn default_allows_each_family() {
    let policy = Policy::default();
    let missing: Vec<String> = MUST_ALLOW
        .iter()
        .filter(|(module, name)| !policy.is_allowed(module, name))
        .map(|(module, name)| format!("{module}:{name}"))
        .collect();
    assert!(missing.is_empty(), "default does not allow {missing:?}");
    assert_eq!(policy.name(), "default");
    assert!(policy.ext_codes().is_empty());
    assert!(policy.len() > 1000, "{}", policy.len());
}

#[test]
fn no_data_file_entry_is_dangerous() {
    let files = DEFAULT_POLICY_FILES.iter().chain(NAMED_POLICY_FILES);
    let mut count = 0;
    for (family, text) in files {
        for line in parse_data(text) {
            let line = line.unwrap_or_else(|e| panic!("{family}.txt: {e}"));
            let entry = format!("{}:{}", line.module, line.name);
            assert!(parse_entry(&entry).is_ok(), "{family}: {entry:?}");
            if danger_reason(&line.module, &line.name).is_some() {
                assert!(
                    *family == "calls"
                        && line.roles.call.is_some()
                        && VERIFIED_CALLS.contains(&(line.module.as_str(), line.name.as_str())),
                    "{family}.txt allows {entry}, which is dangerous"
                );
            }
            count += 1;
        }
    }
    assert!(count > 1000, "{count}");
    // And every entry of every shipped policy (the union of those files).
    for policy in shipped_policies() {
        for (module, name) in policy.entries() {
            assert!(
                danger_reason(&module, &name).is_none()
                    || VERIFIED_CALLS.contains(&(module.as_str(), name.as_str())),
                "{module}:{name}"
            );
        }
    }
}

#[test]
fn exact_matches_only() {
    let policy = Policy::default();
    assert!(policy.is_allowed("collections", "OrderedDict"));
    for (module, name) in [
        ("collections", "OrderedDict.__init__"),
        ("collections", "OrderedDict.fromkeys"),
        ("collections", "OrderedDict."),
        ("collections.abc", "Mapping"),
        ("collections.abc", "OrderedDict"),
        ("collections", "ordereddict"),
        ("Collections", "OrderedDict"),
        ("collections ", "OrderedDict"),
        ("collections", "OrderedDict "),
        ("collections.", "OrderedDict"),
        ("", "collections.OrderedDict"),
        ("collections.OrderedDict", ""),
        ("collections", "OrderedDic"),
        ("collection", "OrderedDict"),
        ("collections", "*"),
        ("collections", ""),
    ] {
        assert!(!policy.is_allowed(module, name), "{module:?}:{name:?}");
    }
    assert!(policy.is_allowed("numpy.core.multiarray", "_reconstruct"));
    for (module, name) in [
        ("numpy.core.multiarray", "_reconstruct.__globals__"),
        ("numpy.core.multiarray", "_reconstruct.__call__"),
        ("numpy.core", "multiarray._reconstruct"),
        ("numpy", "core.multiarray._reconstruct"),
        ("numpy.core.multiarray.os", "system"),
        ("numpy.core.multiarray._reconstruct", "__globals__"),
        ("numpy.core.multiarray", "os"),
        ("numpy.core", "multiarray"),
        ("numpy", "core"),
        ("torch", "_utils"),
        ("torch._utils", "torch"),
        ("torch._utils", "torch.load"),
        ("torch.nn.modules.linear", "Linear.forward"),
        ("torch.nn.modules.linear", "torch"),
    ] {
        assert!(!policy.is_allowed(module, name), "{module}:{name}");
    }
}

#[test]
fn named_policies() {
    assert_eq!(
        Policy::named_policies(),
        &["default", "empty", "xgboost", "lightgbm", "catboost"]
    );
    assert_eq!(Policy::named("default").unwrap(), Policy::ml_default());
    assert_eq!(Policy::named("ml").unwrap(), Policy::ml_default());
    assert!(Policy::named("empty").unwrap().is_empty());
    assert!(Policy::named("none").unwrap().is_empty());
    assert!(!Policy::empty().is_allowed("builtins", "set"));
    let default = Policy::default();
    for (name, class) in [
        ("xgboost", ("xgboost.sklearn", "XGBClassifier")),
        ("lightgbm", ("lightgbm.sklearn", "LGBMClassifier")),
        ("catboost", ("catboost.core", "CatBoostClassifier")),
    ] {
        let policy = Policy::named(name).unwrap();
        assert_eq!(policy.name(), name);
        assert!(policy.is_allowed(class.0, class.1), "{name}");
        assert!(!default.is_allowed(class.0, class.1), "default allows {name}");
        // Each named policy is the default plus its own entries.
        for (module, qual) in default.entries() {
            assert!(policy.is_allowed(&module, &qual), "{name} lacks {module}:{qual}");
        }
        assert!(policy.len() > default.len());
    }
    assert!(!Policy::named("xgboost")
        .unwrap()
        .is_allowed("lightgbm.basic", "Booster"));
    match Policy::named("strict") {
        Err(PolicyError::UnknownPolicy { name, known }) => {
            assert_eq!(name, "strict");
            assert!(known.contains(&"xgboost"));
        }
        other => panic!("{other:?}"),
    }
    let message = Policy::named("nope").unwrap_err().to_string();
    assert!(
        message.contains("nope") && message.contains("default, empty, xgboost"),
        "{message}"
    );
}

#[test]
fn with_allowed_returns_a_new_policy() {
    let base = Policy::default();
    let before = base.len();
    let extended = base
        .with_allowed(["mypkg.models.Net", "mypkg:Outer.Inner", "other.Thing"])
        .unwrap();
    assert!(extended.is_allowed("mypkg.models", "Net"));
    assert!(extended.is_allowed("mypkg", "Outer.Inner"));
    assert!(extended.is_allowed("other", "Thing"));
    assert!(!extended.is_allowed("mypkg", "Outer"));
    assert!(!extended.is_allowed("mypkg.Outer", "Inner"));
    assert!(!extended.is_allowed("mypkg.models", "Net.__init__"));
    assert_eq!(extended.name(), "default+3 entries");
    assert_eq!(extended.len(), before + 3);
    // Neither the base nor the shared default changed.
    assert_eq!(base.len(), before);
    assert!(!base.is_allowed("mypkg.models", "Net"));
    assert!(!Policy::default().is_allowed("mypkg.models", "Net"));
    assert!(!Policy::named("xgboost")
        .unwrap()
        .is_allowed("mypkg.models", "Net"));
    // Already-allowed entries add nothing.
    let same = base.with_allowed(["collections.OrderedDict"]).unwrap();
    assert_eq!(same.name(), "default");
    assert_eq!(same, base);
    let once_more = extended.with_allowed(["x.Y"]).unwrap();
    assert_eq!(once_more.name(), "default+3 entries+1 entries");
    // Extending the empty policy.
    let only = Policy::empty().with_allowed(["a.b.C"]).unwrap();
    assert_eq!(only.entries(), vec![("a.b".to_string(), "C".to_string())]);
}

#[test]
fn malformed_entries_are_rejected_by_name() {
    for bad in [
        "",
        "nodot",
        ".leading",
        "trailing.",
        "a..b",
        "a. b",
        " a.b",
        "a.b ",
        "a\tb.c",
        "a\nb.c",
        "mod:",
        ":name",
        "mod:.name",
        "mod:name.",
        "a:b:c",
        "mod.1name",
        "my-pkg.Thing",
        "pkg.Thing()",
        "pkg/Thing.x",
        "pkg.*",
    ] {
        match Policy::default().with_allowed(["good.Entry", bad]) {
            Err(PolicyError::MalformedEntry { entry, reason }) => {
                assert_eq!(entry, bad);
                assert!(!reason.is_empty());
            }
            other => panic!("{bad:?} gave {other:?}"),
        }
        let message = Policy::empty().with_allowed([bad]).unwrap_err().to_string();
        assert!(message.contains(&format!("{bad:?}")), "{message}");
    }
    // Non-ASCII identifiers are Python names.
    assert!(Policy::empty().with_allowed(["modulé.Clâsse"]).is_ok());
}

#[test]
fn ext_codes() {
    let base = Policy::default();
    assert!(!base.is_ext_code_allowed(240));
    let extended = base.with_allowed_ext_codes([240, 7, 240]);
    assert!(extended.is_ext_code_allowed(240));
    assert!(extended.is_ext_code_allowed(7));
    assert!(!extended.is_ext_code_allowed(8));
    assert_eq!(extended.ext_codes(), vec![7, 240]);
    assert_eq!(extended.name(), "default+2 ext codes");
    assert!(!base.is_ext_code_allowed(240));
    assert!(!Policy::default().is_ext_code_allowed(240));
    // Extending entries keeps the codes, and the other way round.
    let both = extended.with_allowed(["a.B"]).unwrap();
    assert!(both.is_ext_code_allowed(7) && both.is_allowed("a", "B"));
}

#[test]
fn toml_policies() {
    let policy = Policy::from_toml_str(
        "base = \"empty\"\nallow = [\"a.b\", \"pkg:Outer.Inner\"]\nallow_ext_codes = [7]\n",
    )
    .unwrap();
    assert!(policy.is_allowed("a", "b"));
    assert!(policy.is_allowed("pkg", "Outer.Inner"));
    assert!(policy.is_ext_code_allowed(7));
    assert!(!policy.is_allowed("collections", "OrderedDict"));
    assert_eq!(policy.len(), 2);
    assert!(policy.name().starts_with("custom"));

    // The base defaults to the ML allowlist; named policies work as bases.
    let policy = Policy::from_toml_str("allow = [\"mypkg.Model\"]").unwrap();
    assert!(policy.is_allowed("collections", "OrderedDict"));
    assert!(policy.is_allowed("mypkg", "Model"));
    let policy = Policy::from_toml_str("base = \"xgboost\"").unwrap();
    assert!(policy.is_allowed("xgboost.core", "Booster"));
    let policy = Policy::from_toml_str("").unwrap();
    assert_eq!(policy, Policy::default());
    let policy = Policy::from_toml_str("base = \"none\"").unwrap();
    assert!(policy.is_empty());
}

#[test]
fn toml_errors_are_typed() {
    match Policy::from_toml_str("base = \"default\"\nbogus = 1\n") {
        Err(PolicyError::Toml { message, line, .. }) => {
            assert!(message.contains("bogus"), "{message}");
            assert_eq!(line, Some(2));
        }
        other => panic!("{other:?}"),
    }
    match Policy::from_toml_str("allow = [\n  \"a.b\",\n  3,\n]\n") {
        Err(PolicyError::Toml { line, column, .. }) => {
            assert_eq!(line, Some(3));
            assert_eq!(column, Some(3));
        }
        other => panic!("{other:?}"),
    }
    let err = Policy::from_toml_str("allow = [").unwrap_err();
    assert!(matches!(err, PolicyError::Toml { line: Some(1), .. }), "{err:?}");
    assert!(err.to_string().contains("line 1"), "{err}");
    assert!(matches!(
        Policy::from_toml_str("allow = 3"),
        Err(PolicyError::Toml { .. })
    ));
    assert!(matches!(
        Policy::from_toml_str("[allow]\nx = 1"),
        Err(PolicyError::Toml { .. })
    ));
    match Policy::from_toml_str("base = \"strict\"") {
        Err(PolicyError::UnknownPolicy { name, .. }) => assert_eq!(name, "strict"),
        other => panic!("{other:?}"),
    }
    match Policy::from_toml_str("allow = [\"ok.Entry\", \"bad entry\"]") {
        Err(PolicyError::MalformedEntry { entry, .. }) => assert_eq!(entry, "bad entry"),
        other => panic!("{other:?}"),
    }
    for code in ["0", "-1", "2147483648", "99999999999"] {
        match Policy::from_toml_str(&format!("allow_ext_codes = [{code}]")) {
            Err(PolicyError::ExtCodeOutOfRange { code: got }) => {
                assert_eq!(got.to_string(), code);
            }
            other => panic!("{code}: {other:?}"),
        }
    }
    assert!(Policy::from_toml_str("allow_ext_codes = [2147483647]").is_ok());
}

#[test]
fn entries_are_sorted_and_unique() {
    for policy in shipped_policies() {
        let entries = policy.entries();
        assert!(entries.windows(2).all(|w| w[0] < w[1]), "{}", policy.name());
        assert_eq!(entries.len(), policy.len());
        for (module, name) in &entries {
            assert!(policy.is_allowed(module, name));
        }
    }
}

#[test]
fn clones_share_and_compare() {
    let a = Policy::default();
    let b = a.clone();
    assert_eq!(a, b);
    assert_ne!(a, Policy::empty());
    let sendable: std::sync::Arc<Policy> = std::sync::Arc::new(a);
    let handle = std::thread::spawn(move || sendable.is_allowed("builtins", "set"));
    assert!(handle.join().unwrap());
}

#[test]
fn python2_names_are_mapped_before_judging() {
    // The policy is keyed by the names CPython really imports; the analyzer maps
    // protocol < 3 names with compat first.
    use picklefence::compat::map_python2_import;
    let policy = Policy::default();
    let (m, n) = map_python2_import("copy_reg", "_reconstructor");
    assert!(policy.is_allowed(&m, &n));
    let (m, n) = map_python2_import("__builtin__", "set");
    assert!(policy.is_allowed(&m, &n));
    let (m, n) = map_python2_import("__builtin__", "eval");
    assert!(!policy.is_allowed(&m, &n));
    assert!(!policy.is_allowed("__builtin__", "set"));
}

#[test]
fn state_rules_file_parses() {
    let (rules, errors) =
        picklefence::policy::StateRules::parse(picklefence::policy::state_rules::STATE_RULES_FILE);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(rules.get(b"_response_method").is_some());
    assert!(rules.get(b"_forward_hooks").is_some());
    assert!(rules.get(b"coef_").is_none());
}

//! `picklefence._native`: the thin PyO3 layer between the picklefence core and the Python package.
//!
//! Everything here is mechanical: wrap the core's `Policy` (`policy`), pre-scan a `bytes` object
//! (zero-copy, GIL released) or a Python file object (`prescan`, through the one file adapter
//! `file::PyFile` and its read-ahead engine `read_ahead`), scan whole inputs (`scan`, JSON), and
//! run the native-state checks (`native_state`, `walk`). Results are classes with named fields.
//! The decisions (what to do with a verdict, how to patch `pickle`) live in the Python package.

// PyO3 0.22's `#[pyfunction]`/`#[pymethods]` expansion converts `PyResult` errors into `PyErr`,
// which newer clippy flags at the function signature.
#![allow(clippy::useless_conversion)]

use std::borrow::Cow;

use pyo3::panic::PanicException;
use pyo3::prelude::*;

mod convert;
mod file;
mod native_state;
mod policy;
mod prescan;
mod read_ahead;
#[cfg(feature = "cli")]
mod records;
mod scan;
mod walk;

pub use policy::Policy;

/// Raises `picklefence.errors.<class_name>(message)`; falls back to `fallback` if the package's
/// error module cannot be imported (the native module used on its own).
fn package_error(py: Python<'_>, class_name: &str, message: String) -> PyErr {
    match py
        .import_bound("picklefence.errors")
        .and_then(|module| module.getattr(class_name))
    {
        Ok(class) => match class.call1((message.clone(),)) {
            Ok(instance) => PyErr::from_value_bound(instance),
            Err(err) => err,
        },
        Err(_) => pyo3::exceptions::PyValueError::new_err(message),
    }
}

/// `danger_reason(module, name)`: why importing `module.name` is known to be dangerous, if it is.
#[pyfunction]
fn danger_reason(module: Cow<'_, str>, name: Cow<'_, str>) -> Option<&'static str> {
    picklefence::danger_reason(&module, &name)
}

/// Panics inside Rust, so that tests can check that a panic reaches Python as
/// `PanicException` and that the package fails closed on it.
#[pyfunction]
#[allow(clippy::panic)]
fn _panic_for_tests(message: &str) {
    panic!("{message}");
}

/// Runs the `picklefence` command with `argv` (without the program name); its exit code.
#[cfg(feature = "cli")]
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    let mut args = vec!["picklefence".to_string()];
    args.extend(argv);
    py.allow_threads(|| picklefence_cli::run(args))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Policy>()?;
    m.add_class::<walk::NativeStateWalker>()?;
    m.add_class::<walk::WalkedObjects>()?;
    m.add_class::<prescan::Prescan>()?;
    m.add_class::<prescan::Finding>()?;
    m.add_class::<prescan::Verdict>()?;
    m.add_class::<prescan::PrefixKind>()?;
    m.add_function(wrap_pyfunction!(prescan::prescan, m)?)?;
    m.add_function(wrap_pyfunction!(prescan::prefix_kind, m)?)?;
    m.add_function(wrap_pyfunction!(scan::scan_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(scan::scan_file, m)?)?;
    m.add_function(wrap_pyfunction!(convert::convert_file, m)?)?;
    m.add_function(wrap_pyfunction!(danger_reason, m)?)?;
    m.add_function(wrap_pyfunction!(native_state::check_tree_nodes, m)?)?;
    m.add_function(wrap_pyfunction!(native_state::check_trees, m)?)?;
    m.add_function(wrap_pyfunction!(native_state::check_predictor_nodes, m)?)?;
    m.add_function(wrap_pyfunction!(native_state::predictor_feature_counts, m)?)?;
    m.add_function(wrap_pyfunction!(native_state::native_state_classes, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    #[cfg(feature = "cli")]
    {
        m.add_function(wrap_pyfunction!(cli_main, m)?)?;
        m.add_function(wrap_pyfunction!(records::list_files, m)?)?;
        m.add_function(wrap_pyfunction!(records::scan_file_rows, m)?)?;
        m.add_function(wrap_pyfunction!(records::scan_bytes_rows, m)?)?;
    }
    m.add("PanicException", m.py().get_type_bound::<PanicException>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

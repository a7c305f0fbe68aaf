//! The `Policy` class: the core's import allowlist, shared immutably with Python.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use picklefence::{Policy as CorePolicy, PolicyError as CorePolicyError};
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::package_error;

fn policy_error(py: Python<'_>, error: &CorePolicyError) -> PyErr {
    package_error(py, "PolicyError", error.to_string())
}

/// An import allowlist: which `(module, qualified name)` pairs a pickle may import.
///
/// Immutable: `with_allowed` returns a new policy and never changes this one (or the default).
#[pyclass(name = "Policy", module = "picklefence", frozen)]
#[derive(Clone)]
pub struct Policy {
    inner: Arc<CorePolicy>,
}

impl Policy {
    fn wrap(policy: CorePolicy) -> Self {
        Policy {
            inner: Arc::new(policy),
        }
    }

    pub(crate) fn core(&self) -> &CorePolicy {
        &self.inner
    }
}

#[pymethods]
impl Policy {
    /// The default policy (the ML allowlist).
    #[new]
    fn py_new() -> Self {
        Policy::wrap(CorePolicy::ml_default())
    }

    /// The default policy (the ML allowlist).
    #[staticmethod]
    #[pyo3(name = "default")]
    fn py_default() -> Self {
        Policy::wrap(CorePolicy::ml_default())
    }

    /// The ML allowlist: plain data types, NumPy, PyTorch, scikit-learn, pandas, SciPy sparse.
    #[staticmethod]
    fn ml_default() -> Self {
        Policy::wrap(CorePolicy::ml_default())
    }

    /// A policy that allows no import at all (plain data only).
    #[staticmethod]
    fn empty() -> Self {
        Policy::wrap(CorePolicy::empty())
    }

    /// A curated named policy (see `named_policies()`).
    #[staticmethod]
    fn named(py: Python<'_>, name: &str) -> PyResult<Self> {
        CorePolicy::named(name)
            .map(Policy::wrap)
            .map_err(|e| policy_error(py, &e))
    }

    /// The names `named()` accepts.
    #[staticmethod]
    fn named_policies() -> Vec<String> {
        CorePolicy::named_policies()
            .iter()
            .map(|name| name.to_string())
            .collect()
    }

    /// A policy from the text of a TOML policy file.
    #[staticmethod]
    fn from_toml(py: Python<'_>, text: &str) -> PyResult<Self> {
        CorePolicy::from_toml_str(text)
            .map(Policy::wrap)
            .map_err(|e| policy_error(py, &e))
    }

    /// A policy from a TOML policy file.
    #[staticmethod]
    fn from_toml_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PyOSError::new_err(format!("cannot read policy file {}: {e}", path.display())))?;
        CorePolicy::from_toml_str(&text)
            .map(Policy::wrap)
            .map_err(|e| policy_error(py, &e))
    }

    /// A new policy that also allows `entries` ("module.name", split at the last dot, or
    /// "module:qual.name"; "=ROLE" after it gives the role, otherwise the entry is trusted: any
    /// use). A malformed entry, or a name that reaches code, files, processes, the network,
    /// imports, attribute lookup or nested unpickling without `allow_dangerous=True`, raises
    /// `PolicyError` (a `ValueError`) naming it.
    #[pyo3(signature = (entries, *, allow_dangerous = false))]
    fn with_allowed(&self, py: Python<'_>, entries: Vec<String>, allow_dangerous: bool) -> PyResult<Self> {
        self.inner
            .extend(entries, allow_dangerous)
            .map(Policy::wrap)
            .map_err(|e| policy_error(py, &e))
    }

    /// A new policy that also allows these `copyreg` extension codes.
    fn with_allowed_ext_codes(&self, codes: Vec<u32>) -> Self {
        Policy::wrap(self.inner.with_allowed_ext_codes(codes))
    }

    /// Whether the policy allows importing `name` from `module` (exact match).
    fn is_allowed(&self, module: Cow<'_, str>, name: Cow<'_, str>) -> bool {
        self.inner.is_allowed(&module, &name)
    }

    /// Whether the name is allowed where only names are seen (an unpickler that was not
    /// pre-scanned): names allowed only as verified calls (`builtins.getattr`...) are not.
    fn is_allowed_by_name(&self, module: Cow<'_, str>, name: Cow<'_, str>) -> bool {
        self.inner.is_allowed_by_name(&module, &name)
    }

    /// The roles of an allowed name, as policy-file lines (`["reconstruct"]`,
    /// `["call(str<=64) -> value"]`), or None when it is not allowed.
    fn roles(&self, module: Cow<'_, str>, name: Cow<'_, str>) -> Option<Vec<String>> {
        self.inner.roles(&module, &name).map(|roles| roles.lines())
    }

    /// Every allowed name with its roles (policy-file lines) and, for a call, the reviewed
    /// reason it is safe: `(module, name, roles, reason)`, sorted.
    fn entries_with_roles(&self) -> Vec<(String, String, Vec<String>, Option<String>)> {
        self.inner
            .entries_with_roles()
            .into_iter()
            .map(|(module, name, roles)| {
                let reason = roles.call.as_ref().map(|c| c.reason.clone());
                (module, name, roles.lines(), reason)
            })
            .collect()
    }

    /// Whether the policy allows the `copyreg` extension code `code`.
    fn is_ext_code_allowed(&self, code: u32) -> bool {
        self.inner.is_ext_code_allowed(code)
    }

    /// Every allowed `(module, name)` pair.
    fn entries(&self) -> Vec<(String, String)> {
        self.inner.entries()
    }

    /// The policy's name (`"ml-default"`, a named policy's name, or a derived name).
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_string()
    }

    fn __len__(&self) -> usize {
        self.inner.entries().len()
    }

    fn __contains__(&self, entry: Cow<'_, str>) -> bool {
        match entry.rfind('.') {
            Some(dot) => self.inner.is_allowed(&entry[..dot], &entry[dot + 1..]),
            None => false,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<picklefence.Policy {:?} ({} entries)>",
            self.inner.name(),
            self.inner.entries().len()
        )
    }
}

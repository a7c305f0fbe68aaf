//! The walk behind `picklefence._native_state`: every instance of a validated class reachable
//! from a load's result. The Python loop it replaces cost about 0.35 µs per object, which made
//! the walk most of the validators' cost (a HistGradientBoosting model: 650 objects); here the
//! per-object work is a pointer compare and a set insert, and Python is called only once per
//! level (`gc.get_referents` of the whole level) and once per new type.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};

/// Types remembered at most; past it the cache starts again (types are few in practice).
const CACHED_TYPES: usize = 4096;

/// Hashes object addresses: SipHash made a third of the walk's own time, and addresses are
/// not chosen by the file (no flooding to resist).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, address: usize) {
        // Objects are 16-byte aligned: the low bits carry nothing; the multiply spreads the rest.
        self.0 = ((address as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type ByAddress = BuildHasherDefault<AddressHasher>;

/// What the walk does with an object, decided once per type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// A value that holds no objects (int, str, ...), a class or a module.
    Skip,
    /// Follow what the garbage collector sees of it.
    Traverse,
    /// A NumPy array: numpy does not show object items to the garbage collector.
    Array { subclass: bool },
    /// An instance of `classes[index]`: collected, and followed too.
    Found(usize),
}

/// Finds the instances of the validated classes reachable from an object (see
/// `picklefence._native_state`). Made once per set of validated classes; safe to share between
/// threads (the type cache is locked only around lookups, never while Python runs).
#[pyclass(module = "picklefence._native", frozen)]
pub struct NativeStateWalker {
    /// `(class, checker key)`, first match wins.
    classes: Vec<(Py<PyType>, String)>,
    /// Skipped when an object's type is exactly one of these.
    atomic: Vec<Py<PyType>>,
    /// Skipped when one of these is in an object's MRO (classes, modules).
    skipped_bases: Vec<Py<PyType>>,
    ndarray: Option<Py<PyType>>,
    get_referents: PyObject,
    /// Type address -> action; the type is held so that its address is not reused.
    actions: Mutex<HashMap<usize, (Action, Py<PyType>)>>,
}

#[pymethods]
impl NativeStateWalker {
    /// `classes`: `(class, key)` pairs; `atomic`: types skipped exactly; `skipped_bases`: types
    /// skipped with their subclasses; `ndarray`: numpy's array type, if numpy is loaded.
    #[new]
    #[pyo3(signature = (classes, atomic, skipped_bases, ndarray=None))]
    fn new(
        py: Python<'_>,
        classes: Vec<(Py<PyType>, String)>,
        atomic: Vec<Py<PyType>>,
        skipped_bases: Vec<Py<PyType>>,
        ndarray: Option<Py<PyType>>,
    ) -> PyResult<Self> {
        let get_referents = py.import_bound("gc")?.getattr("get_referents")?.unbind();
        Ok(Self {
            classes,
            atomic,
            skipped_bases,
            ndarray,
            get_referents,
            actions: Mutex::new(HashMap::new()),
        })
    }

    /// The instances reachable from `root` (itself included), by checker key. Level by level:
    /// one `gc.get_referents` call per level; each object is looked at once. With `walked`,
    /// objects an earlier walk of the same outer load looked at (a nested load's, whose result
    /// the caller keeps alive) are not looked at again, and this walk's are added.
    #[pyo3(signature = (root, walked=None))]
    fn walk<'py>(
        &self,
        root: &Bound<'py, PyAny>,
        walked: Option<&Bound<'py, WalkedObjects>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = root.py();
        let mut found: Vec<Vec<Bound<'py, PyAny>>> = vec![Vec::new(); self.classes.len()];
        let mut seen: HashSet<usize, ByAddress> = match walked {
            Some(walked) => walked.get().take(),
            None => HashSet::with_capacity_and_hasher(1024, ByAddress::default()),
        };
        let result = self.walk_from(root, &mut found, &mut seen);
        if let Some(walked) = walked {
            walked.get().put(seen);
        }
        result?;
        let result = PyDict::new_bound(py);
        for ((_, key), instances) in self.classes.iter().zip(found) {
            if instances.is_empty() {
                continue;
            }
            match result.get_item(key)? {
                Some(list) => {
                    let list = list.downcast_into::<PyList>()?;
                    for instance in instances {
                        list.append(instance)?;
                    }
                }
                None => result.set_item(key, PyList::new_bound(py, instances))?,
            }
        }
        Ok(result)
    }
}

/// The addresses of the objects the walks of one outer load (and its nested loads) looked at.
/// Valid while those objects live: the guard keeps every nested load's result until the outer
/// load ends.
#[pyclass(module = "picklefence._native", frozen)]
#[derive(Default)]
pub struct WalkedObjects {
    addresses: Mutex<HashSet<usize, ByAddress>>,
}

#[pymethods]
impl WalkedObjects {
    #[new]
    fn new() -> Self {
        Self::default()
    }
}

impl WalkedObjects {
    fn take(&self) -> HashSet<usize, ByAddress> {
        self.addresses
            .lock()
            .map(|mut set| std::mem::take(&mut *set))
            .unwrap_or_default()
    }

    fn put(&self, addresses: HashSet<usize, ByAddress>) {
        if let Ok(mut set) = self.addresses.lock() {
            *set = addresses;
        }
    }
}

impl NativeStateWalker {
    /// The walk itself: fills `found` and `seen`.
    fn walk_from<'py>(
        &self,
        root: &Bound<'py, PyAny>,
        found: &mut [Vec<Bound<'py, PyAny>>],
        seen: &mut HashSet<usize, ByAddress>,
    ) -> PyResult<()> {
        let py = root.py();
        let mut local: HashMap<usize, Action, ByAddress> = HashMap::default();
        // Lists made here (object arrays' items) live until the walk ends: their addresses
        // must not be reused by a later one while the walk runs.
        let mut made: Vec<Bound<'py, PyAny>> = Vec::new();
        let mut level = PyList::new_bound(py, [root]);
        while !level.is_empty() {
            let mut traverse: Vec<Bound<'py, PyAny>> = Vec::new();
            let mut last: Option<(usize, Action)> = None;
            for obj in level.iter() {
                let kind = obj.get_type();
                let kind_address = kind.as_ptr() as usize;
                let action = match last {
                    Some((address, action)) if address == kind_address => action,
                    _ => {
                        let action = match local.get(&kind_address) {
                            Some(action) => *action,
                            None => {
                                let action = self.action_of(&kind)?;
                                local.insert(kind_address, action);
                                action
                            }
                        };
                        last = Some((kind_address, action));
                        action
                    }
                };
                if action == Action::Skip || !seen.insert(obj.as_ptr() as usize) {
                    continue;
                }
                match action {
                    Action::Skip => {}
                    Action::Traverse => traverse.push(obj),
                    Action::Found(index) => {
                        if let Some(instances) = found.get_mut(index) {
                            instances.push(obj.clone());
                        }
                        traverse.push(obj);
                    }
                    Action::Array { subclass } => {
                        if obj
                            .getattr(intern!(py, "dtype"))?
                            .getattr(intern!(py, "hasobject"))?
                            .is_truthy()?
                        {
                            let items = obj
                                .call_method1(intern!(py, "ravel"), (intern!(py, "K"),))?
                                .call_method0(intern!(py, "tolist"))?;
                            made.push(items.clone());
                            traverse.push(items);
                        }
                        // A subclass may carry an instance dict.
                        if subclass {
                            traverse.push(obj);
                        }
                    }
                }
            }
            if traverse.is_empty() {
                break;
            }
            let referents = self
                .get_referents
                .bind(py)
                .call1(PyTuple::new_bound(py, traverse))?;
            level = referents.downcast_into::<PyList>()?;
        }
        // Lists made here (object arrays' items) die with this walk: their addresses may be
        // reused, so they are not remembered as walked.
        for list in &made {
            seen.remove(&(list.as_ptr() as usize));
        }
        Ok(())
    }

    /// The action for objects of `kind`: from the shared cache, or decided from its MRO.
    fn action_of(&self, kind: &Bound<'_, PyType>) -> PyResult<Action> {
        let address = kind.as_ptr() as usize;
        if let Ok(actions) = self.actions.lock() {
            if let Some((action, _)) = actions.get(&address) {
                return Ok(*action);
            }
        }
        let action = self.decide(kind)?;
        if let Ok(mut actions) = self.actions.lock() {
            if actions.len() >= CACHED_TYPES {
                actions.clear();
            }
            actions.insert(address, (action, kind.clone().unbind()));
        }
        Ok(action)
    }

    fn decide(&self, kind: &Bound<'_, PyType>) -> PyResult<Action> {
        let py = kind.py();
        if self.atomic.iter().any(|t| t.bind(py).is(kind)) {
            return Ok(Action::Skip);
        }
        let mro = kind.getattr("__mro__")?.downcast_into::<PyTuple>()?;
        let in_mro = |t: &Py<PyType>| mro.iter().any(|base| base.is(t.bind(py)));
        if self.skipped_bases.iter().any(in_mro) {
            return Ok(Action::Skip);
        }
        if let Some(index) = self.classes.iter().position(|(class, _)| in_mro(class)) {
            return Ok(Action::Found(index));
        }
        if let Some(ndarray) = &self.ndarray {
            if in_mro(ndarray) {
                return Ok(Action::Array {
                    subclass: !ndarray.bind(py).is(kind),
                });
            }
        }
        Ok(Action::Traverse)
    }
}

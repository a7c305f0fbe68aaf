//! CPython's `fix_imports` mapping (`_compat_pickle`), applied for protocols below 3 so that
//! the policy judges what would really be imported (`__builtin__.eval` is `builtins.eval`).
//!
//! The tables are data generated from CPython's own `_compat_pickle` by
//! `scripts/gen_policy_data.py` (`policies/compat_pickle.txt`), parsed once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../policies/compat_pickle.txt");

type NameMap = HashMap<(&'static str, &'static str), (&'static str, &'static str)>;

struct Tables {
    /// `_compat_pickle.NAME_MAPPING`: checked first.
    names: NameMap,
    /// `_compat_pickle.IMPORT_MAPPING`: module renames.
    modules: HashMap<&'static str, &'static str>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut names = HashMap::new();
        let mut modules = HashMap::new();
        for line in TABLE.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let fields: Vec<&'static str> = line.split_whitespace().collect();
            // A line of any other shape is not data; the tests check that every line parses.
            match fields.as_slice() {
                ["name", old_module, old_name, new_module, new_name] => {
                    names.insert((*old_module, *old_name), (*new_module, *new_name));
                }
                ["import", old_module, new_module] => {
                    modules.insert(*old_module, *new_module);
                }
                _ => {}
            }
        }
        Tables { names, modules }
    })
}

/// What `pickle._Unpickler.find_class` imports for `module.name` when `proto < 3` and
/// `fix_imports` is on: `NAME_MAPPING[(module, name)]` if present, else the module renamed by
/// `IMPORT_MAPPING`, else the pair unchanged.
pub fn map_python2_import<'a>(module: &'a str, name: &'a str) -> (Cow<'a, str>, Cow<'a, str>) {
    let tables = tables();
    if let Some(&(new_module, new_name)) = tables.names.get(&(module, name)) {
        return (Cow::Borrowed(new_module), Cow::Borrowed(new_name));
    }
    if let Some(&new_module) = tables.modules.get(module) {
        return (Cow::Borrowed(new_module), Cow::Borrowed(name));
    }
    (Cow::Borrowed(module), Cow::Borrowed(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(module: &str, name: &str) -> String {
        let (m, n) = map_python2_import(module, name);
        format!("{m}.{n}")
    }

    #[test]
    fn every_data_line_parses() {
        let data_lines = TABLE
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .filter(|l| !l.is_empty())
            .count();
        let t = tables();
        assert_eq!(t.names.len() + t.modules.len(), data_lines);
        // CPython 3.8+ has 88 name and 55 module mappings at the time of writing; the exact
        // numbers follow the generating interpreter, but both tables are substantial.
        assert!(t.names.len() > 50 && t.modules.len() > 40);
    }

    #[test]
    fn maps_like_cpython() {
        assert_eq!(map("__builtin__", "eval"), "builtins.eval");
        assert_eq!(map("__builtin__", "getattr"), "builtins.getattr");
        assert_eq!(map("commands", "getoutput"), "subprocess.getoutput");
        assert_eq!(map("copy_reg", "_reconstructor"), "copyreg._reconstructor");
        assert_eq!(map("cPickle", "loads"), "pickle.loads");
        assert_eq!(map("exceptions", "OSError"), "builtins.OSError");
        assert_eq!(map("exceptions", "StandardError"), "builtins.Exception");
        assert_eq!(map("__builtin__", "xrange"), "builtins.range");
        assert_eq!(map("__builtin__", "unicode"), "builtins.str");
        assert_eq!(map("__builtin__", "reduce"), "functools.reduce");
        assert_eq!(map("__builtin__", "intern"), "sys.intern");
        assert_eq!(map("UserDict", "IterableUserDict"), "collections.UserDict");
        assert_eq!(map("urllib", "urlopen"), "urllib.request.urlopen");
        assert_eq!(map("urllib2", "urlopen"), "urllib.request.urlopen");
        assert_eq!(map("itertools", "izip"), "builtins.zip");
    }

    #[test]
    fn name_mapping_wins_over_module_mapping() {
        // `UserDict` is in both tables: NAME_MAPPING decides for its listed names only.
        assert_eq!(map("UserDict", "UserDict"), "collections.UserDict");
        assert_eq!(map("UserDict", "DictMixin"), "collections.DictMixin");
        // `urllib` has no IMPORT_MAPPING entry: unlisted names stay in `urllib`.
        assert_eq!(map("urllib", "unquote_to_bytes"), "urllib.unquote_to_bytes");
    }

    #[test]
    fn python3_names_pass_through_borrowed() {
        let (m, n) = map_python2_import("numpy", "dtype");
        assert!(matches!(m, Cow::Borrowed("numpy")));
        assert!(matches!(n, Cow::Borrowed("dtype")));
        assert_eq!(map("builtins", "eval"), "builtins.eval");
        assert_eq!(map("collections", "OrderedDict"), "collections.OrderedDict");
    }
}

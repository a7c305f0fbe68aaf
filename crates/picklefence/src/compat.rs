//! CPython's `fix_imports` mapping (`_compat_pickle`), applied for protocols below 3 so that
//! the policy judges what would really be imported (`__builtin__.eval` is `builtins.eval`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../policies/compat_pickle.txt");

struct Tables {
    names: HashMap<(&'static str, &'static str), (&'static str, &'static str)>,
    modules: HashMap<&'static str, &'static str>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut names = HashMap::new();
        let mut modules = HashMap::new();
        for line in TABLE.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
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

/// What `pickle._Unpickler.find_class` imports for `module.name` when `proto < 3`.
pub fn map_python2_import<'a>(module: &'a str, name: &'a str) -> (Cow<'a, str>, Cow<'a, str>) {
    let tables = tables();
    if let Some((new_module, new_name)) = tables.names.get(&(module, name)) {
        return (Cow::Borrowed(new_module), Cow::Borrowed(new_name));
    }
    if let Some(new_module) = tables.modules.get(module) {
        return (Cow::Borrowed(new_module), Cow::Borrowed(name));
    }
    (Cow::Borrowed(module), Cow::Borrowed(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_like_cpython() {
        let map = |m, n| {
            let (m, n) = map_python2_import(m, n);
            format!("{m}.{n}")
        };
        assert_eq!(map("__builtin__", "eval"), "builtins.eval");
        assert_eq!(map("commands", "getoutput"), "subprocess.getoutput");
        assert_eq!(map("copy_reg", "_reconstructor"), "copyreg._reconstructor");
        assert_eq!(map("__builtin__", "xrange"), "builtins.range");
        assert_eq!(map("numpy", "dtype"), "numpy.dtype");
    }
}

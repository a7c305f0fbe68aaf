//! Storing a value (in a container, as state, as the pickle's result) and adding items to
//! what the pickle made: where an import that may not be stored is refused.

use super::*;

impl<'p> Analyzer<'p> {
    // -----------------------------------------------------------------------------------
    // Storing

    /// `value` is stored (a container item, object state, the pickle's result) under `key`
    /// when it is a dict value: an import must be allowed as a value there.
    pub(in crate::analyzer) fn store(&mut self, offset: u64, value: &Value, key: Option<&[u8]>) {
        match value {
            Value::Import(index) => {
                let index = *index;
                if self.import_storable(index) {
                    return;
                }
                let value_role = self.roles_of(index).and_then(|r| r.value.as_ref());
                let as_item = value_role.is_some_and(|v| v.as_item);
                if let Some(keys) = value_role.and_then(|v| v.only_under.as_ref()) {
                    match key {
                        Some(key) if keys.iter().any(|k| k.as_bytes() == key) => return,
                        None if as_item => return,
                        _ => {}
                    }
                    let place = match (as_item, keys.is_empty()) {
                        (true, true) => {
                            "as an item of a tuple or list (never under an attribute)".to_string()
                        }
                        (true, false) => format!("as a tuple or list item or under {}", keys.join(", ")),
                        (false, _) => format!(
                            "under {} (where its library calls it with arguments it computes)",
                            keys.join(", ")
                        ),
                    };
                    let under = key.map_or_else(
                        || "outside an attribute".to_string(),
                        |k| format!("under the key {:?}", String::from_utf8_lossy(k)),
                    );
                    let message = format!(
                        "offset {offset}: the pickle stores {} {under}; the policy allows it only as a value stored \
                         {place}",
                        self.shown(index)
                    );
                    self.role_finding(offset, index, message);
                    return;
                }
                let message = format!(
                    "offset {offset}: the pickle stores {} as a value, which the policy allows only as {}; \
                     a stored value may be called later by the library with any arguments",
                    self.shown(index),
                    self.role_words(index)
                );
                self.role_finding(offset, index, message);
            }
            Value::Tuple(items, meta) if !meta.storable => {
                // Only the items that hold the offending import are walked.
                let items = Rc::clone(items);
                for item in items.iter() {
                    let bad = match item {
                        Value::Import(index) => !self.import_storable(*index),
                        Value::Tuple(_, meta) => !meta.storable,
                        _ => false,
                    };
                    if bad {
                        self.store(offset, item, None);
                        return;
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether a value needs `store` at all (the fast path leaves those to the general one).
    #[inline]
    pub(in crate::analyzer) fn needs_store_check(&self, value: &Value) -> bool {
        match value {
            Value::Import(index) => !self.import_storable(*index),
            Value::Tuple(_, meta) => !meta.storable,
            _ => false,
        }
    }

    // -----------------------------------------------------------------------------------
    // Items

    /// SETITEM(S), APPEND(S), ADDITEMS: `items` go into `target`.
    pub(in crate::analyzer) fn add_items(
        &mut self,
        offset: u64,
        opcode: Opcode,
        target: &Value,
        items: &[Value],
    ) {
        let pairs = matches!(opcode, Opcode::SetItem | Opcode::SetItems);
        if pairs {
            for pair in items.chunks(2) {
                if let [key, value] = pair {
                    self.store(offset, key, None);
                    self.store(offset, value, key.name_bytes());
                }
            }
        } else {
            for item in items {
                self.store(offset, item, None);
            }
        }
        if self.is_frozen(target) {
            self.finding(
                FindingKind::BuildViolation,
                Severity::Critical,
                offset,
                None,
                format!(
                    "{} at offset {offset} changes a {} after it was judged as an object's state (the object may \
                     hold it, so the change would bypass the state rules)",
                    opcode.name(),
                    target.what()
                ),
            );
            return;
        }
        match target {
            Value::Import(index) => self.state_injection(offset, *index, opcode.name(), "modifies"),
            Value::Dict(id) if pairs => self.dict_set(*id, items),
            Value::List(id) if !pairs => self.list_extend(*id, items),
            Value::Obj(id) => {
                let hooks = pairs
                    && items
                        .chunks(2)
                        .all(|pair| pair.get(1).is_some_and(|v| self.is_hook_object(v)));
                let bad_key = if pairs {
                    items
                        .chunks(2)
                        .find_map(|pair| pair.first().and_then(item_key_problem))
                } else {
                    None
                };
                self.obj_items(offset, opcode, *id, hooks, bad_key);
            }
            Value::Set if opcode == Opcode::AddItems => {}
            // Already reported where CPython would have raised.
            Value::Unknown => {}
            _ => self.finding(
                FindingKind::BuildViolation,
                Severity::Critical,
                offset,
                None,
                format!(
                    "{} at offset {offset} adds items to a {}, which no pickle writer does: into a bytearray it \
                     would rewrite bytes that an array or buffer made from it already holds, after that was checked",
                    opcode.name(),
                    match target {
                        Value::Bytes { .. } => "bytes or bytearray",
                        other => other.what(),
                    }
                ),
            ),
        }
    }

    /// An object of a class that a `hooks` state rule accepts in a hook container.
    pub(super) fn is_hook_object(&self, value: &Value) -> bool {
        let Value::Obj(id) = value else {
            return false;
        };
        let rules = self.policy.state_rules();
        self.tables
            .objects
            .get(*id as usize)
            .filter(|o| o.class != NO_CLASS && o.flags & Obj::POISONED == 0)
            .and_then(|o| self.table.get(o.class as usize))
            .and_then(|e| e.target.as_ref())
            .is_some_and(|t| rules.is_hook_class(&t.module, &t.name))
    }

    pub(super) fn obj_items(
        &mut self,
        offset: u64,
        opcode: Opcode,
        id: u32,
        hooks: bool,
        bad_key: Option<String>,
    ) {
        let Some(obj) = self.tables.objects.get(id as usize) else {
            return;
        };
        let flags = obj.flags;
        let class = obj.class;
        if flags & Obj::POISONED != 0 {
            return;
        }
        // APPENDS and ADDITEMS call `append`/`extend`/`add` looked up on the instance: after
        // its BUILD that may be anything the state put there.
        let calls_method = !matches!(opcode, Opcode::SetItem | Opcode::SetItems);
        let problem = if flags & Obj::MAY_ITEMS == 0 {
            Some("which may not receive items (its role allows no SETITEMS/APPENDS)".to_string())
        } else if let Some(key) = bad_key {
            // A mapping class may answer attribute lookups from its items (`__getattr__`),
            // so BUILD, copy and deepcopy would find a special method among them.
            Some(format!(
                "with the key {key}: an item may be what a lookup of a special method finds"
            ))
        } else if calls_method && flags & Obj::BUILT != 0 {
            Some(
                "after its BUILD: the items would be added through a method looked up on the instance"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(problem) = problem {
            let made_by = self.made_by(class);
            let name = (class != NO_CLASS).then(|| self.import_name(class)).flatten();
            self.finding(
                FindingKind::BuildViolation,
                Severity::Critical,
                offset,
                name,
                format!(
                    "{} at offset {offset} adds items to the object made by {made_by} at offset {}, {problem}",
                    opcode.name(),
                    self.tables.objects.get(id as usize).map_or(0, |o| o.offset),
                ),
            );
            self.poison(id);
            return;
        }
        if let Some(obj) = self.tables.objects.get_mut(id as usize) {
            // Hook items only: set by the first items, kept while every later one is one too.
            let first = obj.flags & Obj::HAS_ITEMS == 0;
            if hooks && (first || obj.flags & Obj::HOOK_ITEMS != 0) {
                obj.flags |= Obj::HOOK_ITEMS;
            } else {
                obj.flags &= !Obj::HOOK_ITEMS;
            }
            obj.flags |= Obj::HAS_ITEMS;
            obj.flags &= !Obj::EMPTY_ODICT;
        }
    }

    pub(in crate::analyzer) fn set_numel(&mut self, id: u32, numel: u64) {
        if let Some(obj) = self.tables.objects.get_mut(id as usize) {
            obj.numel = numel;
        }
    }

    pub(super) fn obj_text(&self, id: u32) -> Option<&ObjText> {
        self.tables.texts.get(&id)
    }

    pub(super) fn poison(&mut self, id: u32) {
        if let Some(obj) = self.tables.objects.get_mut(id as usize) {
            obj.flags |= Obj::POISONED;
        }
    }

    pub(super) fn made_by(&self, class: u32) -> String {
        if class == NO_CLASS {
            "a call".into()
        } else {
            self.shown(class)
        }
    }
}

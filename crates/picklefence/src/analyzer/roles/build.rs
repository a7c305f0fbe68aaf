//! BUILD and state: what an object's state may hold, by its class's state rules (numpy
//! arrays and dtypes included), and files nested in bytes constants.

use super::*;

impl<'p> Analyzer<'p> {
    // -----------------------------------------------------------------------------------
    // BUILD

    /// An opcode that changes an imported object itself (a class or function the process shares).
    pub(super) fn state_injection(&mut self, offset: u64, index: u32, opcode: &str, verb: &str) {
        let name = self.import_name(index);
        let shown = self.shown(index);
        self.finding(
            FindingKind::StateInjection,
            Severity::Critical,
            offset,
            name,
            format!("{opcode} at offset {offset} {verb} the imported object {shown} (state injection)"),
        );
    }

    pub(in crate::analyzer) fn build_op(&mut self, offset: u64, target: &Value, state: &Value) {
        match target {
            Value::Obj(id) => self.build_obj(offset, *id, state),
            Value::Import(index) => self.state_injection(offset, *index, "BUILD", "sets the state of"),
            Value::Unknown => {}
            other => {
                let what = other.what();
                self.finding(
                    FindingKind::UnsafeBuild,
                    Severity::High,
                    offset,
                    None,
                    format!("BUILD at offset {offset} sets the state of a {what}, which the pickle did not make by a call"),
                );
            }
        }
    }

    pub(super) fn build_obj(&mut self, offset: u64, id: u32, state: &Value) {
        let Some(obj) = self.tables.objects.get(id as usize).cloned() else {
            return;
        };
        if obj.flags & Obj::POISONED != 0 {
            return;
        }
        // Names for messages, made only when there is something to report.
        let made_by = |this: &Self| this.made_by(obj.class);
        let name = |this: &Self| {
            (obj.class != NO_CLASS)
                .then(|| this.import_name(obj.class))
                .flatten()
        };
        let problem = if obj.flags & Obj::BUILT != 0 {
            let made_by = made_by(self);
            Some(format!(
                "a second BUILD of the object made by {made_by} at offset {}: after the first, BUILD calls a \
                 __setstate__ the state may have put on the instance",
                obj.offset
            ))
        } else if obj.flags & Obj::FROZEN != 0 {
            let made_by = made_by(self);
            Some(format!(
                "BUILD of the object made by {made_by} at offset {} after it was passed to a call or judged as \
                 part of a state (what was judged would change)",
                obj.offset
            ))
        } else if obj.flags & Obj::MAY_BUILD == 0 {
            let made_by = made_by(self);
            Some(format!(
                "BUILD of the result of {made_by} at offset {}, which may be a shared object (a singleton or \
                 cached instance): its state would change for the whole process",
                obj.offset
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            let name = name(self);
            self.finding(
                FindingKind::BuildViolation,
                Severity::Critical,
                offset,
                name,
                format!("offset {offset}: {problem}"),
            );
            self.poison(id);
            return;
        }
        if let Some(o) = self.tables.objects.get_mut(id as usize) {
            o.flags |= Obj::BUILT;
        }
        // The state the object may receive: the call's result spec, else its class's role.
        let spec = obj.schema.and_then(|s| match &s.result {
            ResultSpec::Fresh { state, .. } | ResultSpec::New { state, .. } => state.clone(),
            _ => None,
        });
        let special = spec.as_ref().and_then(|spec| {
            spec.kinds
                .iter()
                .find(|k| matches!(k, Kind::NdarrayState | Kind::DtypeState))
                .cloned()
        });
        let problem = match (special, spec) {
            (Some(Kind::NdarrayState), _) => self.ndarray_state(offset, id, state).err(),
            (Some(_), _) => self.dtype_state(id, state).err(),
            (None, Some(spec)) => match self.match_arg(offset, &spec, state, &[]) {
                // An import that is an item of a tuple state was judged by the spec's kind there
                // (`callable{...}` in a partial's state); the other items are judged as state.
                Ok(()) => match state {
                    Value::Tuple(items, _) if items.iter().any(|item| matches!(item, Value::Import(_))) => {
                        items
                            .iter()
                            .filter(|item| !matches!(item, Value::Import(_)))
                            .find_map(|item| self.state_problem(item, StateShape::Any))
                    }
                    _ => self.state_problem(state, StateShape::Any),
                },
                Err(Misfit::Shape(why)) => Some(format!("the state is {why}; expected {spec}")),
                Err(Misfit::Role(import, why)) => Some(format!(
                    "the state holds {} {why}, which the policy allows only as {}",
                    self.shown(import),
                    self.role_words(import)
                )),
            },
            (None, None) => {
                let shape = if obj.flags & Obj::TRUSTED != 0 {
                    StateShape::Any
                } else {
                    obj.reconstruct.map_or(StateShape::Dict, |r| r.state)
                };
                self.state_problem(state, shape)
            }
        };
        if let Some(problem) = problem {
            let (name, made_by) = (name(self), made_by(self));
            self.finding(
                FindingKind::StateViolation,
                Severity::Critical,
                offset,
                name,
                format!(
                    "BUILD at offset {offset} gives the object made by {made_by} at offset {} a state the policy \
                     refuses: {problem}",
                    obj.offset
                ),
            );
            self.poison(id);
        } else {
            self.freeze_state(state);
            self.set_partial_state(id, state);
        }
    }

    /// numpy's `ndarray.__setstate__((version, shape, dtype, is_fortran, rawdata, ...))`:
    /// records the element count; a list of objects must hold exactly that many.
    pub(super) fn ndarray_state(&mut self, offset: u64, id: u32, state: &Value) -> Result<(), String> {
        let items: Vec<Value> = match state {
            Value::Tuple(items, _) => items.to_vec(),
            other => {
                return Err(format!(
                    "{}, not numpy's array state tuple",
                    self.describe_value(other)
                ))
            }
        };
        // (shape, dtype, is_fortran, rawdata) or (version, shape, ...), masked arrays add items.
        let first = usize::from(matches!(items.first(), Some(Value::Int(_))));
        let Some(shape) = items.get(first).and_then(dims) else {
            return Err("the array shape is not a tuple of non-negative ints".into());
        };
        let numel = shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(d))
            .filter(|n| *n <= 1 << 48)
            .ok_or_else(|| format!("the array shape {shape:?} has too many elements"))?;
        let rest = items.get(first + 1..).unwrap_or_default();
        if rest.len() < 3 {
            return Err("numpy's array state has too few items".into());
        }
        for item in rest {
            self.match_data(item).map_err(|m| match m {
                Misfit::Role(import, _) => format!(
                    "it holds {}, which the policy allows only as {}",
                    self.shown(import),
                    self.role_words(import)
                ),
                Misfit::Shape(why) => why,
            })?;
        }
        if let Some(Value::List(list)) = rest.get(2) {
            let len = self
                .tables
                .lists
                .get(*list as usize)
                .map_or(0, |l| u64::from(l.len));
            if len != numel {
                return Err(format!(
                    "the array of shape {shape:?} ({numel} elements) is given {len} objects: numpy reads past the list (memory corruption)"
                ));
            }
        }
        if let Some(obj) = self.tables.objects.get_mut(id as usize) {
            obj.numel = numel;
        }
        if let Some(rawdata) = rest.get(2) {
            self.ndarray_over_bytes(offset, id, rawdata);
        }
        Ok(())
    }

    /// numpy's `dtype.__setstate__`: the flags must be the ones numpy writes for the kind.
    pub(super) fn dtype_state(&mut self, id: u32, state: &Value) -> Result<(), String> {
        let Value::Tuple(items, _) = state else {
            return Err(format!(
                "{}, not numpy's dtype state tuple",
                self.describe_value(state)
            ));
        };
        let int = |i: usize| match items.get(i) {
            Some(Value::Int(v)) => Some(*v),
            _ => None,
        };
        let version_ok = matches!((int(0), items.len()), (Some(3), 8) | (Some(4), 9));
        if !version_ok {
            return Err("the dtype state has a version or length numpy does not write".into());
        }
        for item in items.iter() {
            self.match_data(item)
                .map_err(|_| "the dtype state holds an import it may not".to_string())?;
        }
        let Some(flags) = int(7) else {
            return Err("the dtype flags are not an int".into());
        };
        let descr = self.obj_text(id).and_then(|t| t.text.clone());
        let descr = descr.as_deref().unwrap_or("");
        if !is_canonical_descr(descr) {
            return Err(format!(
                "the dtype was made from {descr:?}, not a kind and size as numpy writes it, so its flags \
                 cannot be judged"
            ));
        }
        let objects_inside = self.dtype_parts_hold_objects(items)?;
        if !dtype_flags_ok(descr, flags, objects_inside) {
            return Err(format!(
                "flags {flags} on a {descr:?} dtype{}: numpy trusts them, and would read raw bytes as object \
                 pointers or objects as raw bytes",
                if objects_inside { " with object fields" } else { "" }
            ));
        }
        if objects_inside || descr.starts_with('O') {
            if let Some(obj) = self.tables.objects.get_mut(id as usize) {
                obj.flags |= Obj::HOLDS_OBJECTS;
            }
        }
        let size = descr_item_size(descr, int(5));
        self.dtype_parts_fit(items, size)?;
        if let Some(obj) = self.tables.objects.get_mut(id as usize) {
            obj.numel = size;
        }
        Ok(())
    }

    /// A dtype state's subarray and fields inside its items of `size` bytes: numpy's
    /// `__setstate__` checks neither, and reading a field (or the subarray) then reads and
    /// writes past each item, as does making an array of objects with such a dtype.
    fn dtype_parts_fit(&self, items: &[Value], size: u64) -> Result<(), String> {
        if let Some(Value::Tuple(parts, _)) = items.get(2) {
            let base = match parts.first() {
                Some(Value::Obj(base)) => self.dtype_size(*base),
                _ => None,
            };
            let count = parts
                .get(1)
                .and_then(dims)
                .and_then(|shape| shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(d)));
            match base.zip(count).and_then(|(base, count)| base.checked_mul(count)) {
                Some(bytes) if bytes <= size => {}
                Some(bytes) => {
                    return Err(format!(
                        "a subarray of {bytes} bytes in items of {size}: numpy would read and write past each item"
                    ))
                }
                None => return Err("the subarray's size cannot be read".into()),
            }
        }
        if let Some(Value::Dict(id)) = items.get(4) {
            let Some(dict) = self.tables.dicts.get(*id as usize) else {
                return Err("the fields cannot be read".into());
            };
            if dict.flags & DictInfo::UNREAD_FIELD != 0 {
                return Err(
                    "a field is not (dtype, offset) with a dtype of known size and an offset of at least 0"
                        .into(),
                );
            }
            if dict.field_end > size {
                return Err(format!(
                    "a field ends at byte {} of items of {size}: numpy would read and write past each item",
                    dict.field_end
                ));
            }
        }
        Ok(())
    }

    /// How far a structured dtype's field `(dtype, offset[, title])` reaches into an item
    /// (None: not such a field, or its dtype's size is not known).
    pub(super) fn field_end(&self, value: &Value) -> Option<u64> {
        let Value::Tuple(items, _) = value else {
            return None;
        };
        match &items[..] {
            [Value::Obj(dtype), Value::Int(offset)] | [Value::Obj(dtype), Value::Int(offset), _] => {
                u64::try_from(*offset).ok()?.checked_add(self.dtype_size(*dtype)?)
            }
            _ => None,
        }
    }

    /// A dtype object's item size: as its state set it, else as its kind and size say.
    fn dtype_size(&self, id: u32) -> Option<u64> {
        if !self.is_dtype_obj(id) {
            return None;
        }
        let recorded = self.tables.objects.get(id as usize).map_or(u64::MAX, |o| o.numel);
        if recorded != u64::MAX {
            return Some(recorded);
        }
        let descr = self.obj_text(id).and_then(|t| t.text.clone())?;
        is_canonical_descr(&descr).then(|| descr_item_size(&descr, None))
    }

    /// Whether a dtype state's subarray base or fields hold objects; an error when the
    /// scanner cannot tell (parts that are not dtypes, or dtypes that could still change).
    pub(super) fn dtype_parts_hold_objects(&self, items: &[Value]) -> Result<bool, String> {
        let subarray = match items.get(2) {
            None | Some(Value::None) => false,
            Some(Value::Tuple(parts, _)) => match parts.first() {
                Some(Value::Obj(base)) if parts.len() == 2 && self.is_dtype_obj(*base) => {
                    if self.obj_flags(*base) & Obj::BUILT == 0 && !self.dtype_holds_objects(*base) {
                        return Err(
                            "the subarray's dtype is not built yet (its flags could still change)".into(),
                        );
                    }
                    self.dtype_holds_objects(*base)
                }
                _ => return Err("the subarray is not (dtype, shape)".into()),
            },
            Some(other) => return Err(format!("the subarray is {}", self.describe_value(other))),
        };
        let fields = match items.get(4) {
            None | Some(Value::None) => false,
            Some(Value::Dict(id)) => {
                let flags = self.tables.dicts.get(*id as usize).map_or(0, |d| d.flags);
                if flags & DictInfo::DTYPE_OPEN != 0 {
                    return Err("a field's dtype is not built yet (its flags could still change)".into());
                }
                flags & DictInfo::DTYPE_OBJECTS != 0
            }
            Some(other) => return Err(format!("the fields are {}", self.describe_value(other))),
        };
        Ok(subarray || fields)
    }

    /// An object made by `numpy.dtype(...)` (its state is judged as a dtype state).
    pub(super) fn is_dtype_obj(&self, id: u32) -> bool {
        self.tables
            .objects
            .get(id as usize)
            .and_then(|o| o.schema)
            .is_some_and(|schema| match &schema.result {
                ResultSpec::Fresh {
                    state: Some(spec), ..
                } => spec.kinds.iter().any(|k| matches!(k, Kind::DtypeState)),
                _ => false,
            })
    }

    /// Whether a dtype object's items are Python objects: an object kind, object fields, or a
    /// descr the scanner cannot read.
    pub(super) fn dtype_holds_objects(&self, id: u32) -> bool {
        if self.obj_flags(id) & Obj::HOLDS_OBJECTS != 0 {
            return true;
        }
        let descr = self.obj_text(id).and_then(|t| t.text.as_deref()).unwrap_or("");
        descr.starts_with('O') || !is_canonical_descr(descr)
    }

    // -----------------------------------------------------------------------------------
    // State

    /// What is wrong with `state` as an object's state, if anything.
    pub(super) fn state_problem(&self, state: &Value, shape: StateShape) -> Option<String> {
        let dict_problem = |value: &Value| -> Option<Option<String>> {
            match value {
                Value::Dict(id) => Some(self.dict_state_problem(*id)),
                Value::None => Some(None),
                _ => None,
            }
        };
        // `(state, slotstate)`: both dicts become attributes.
        if let Value::Tuple(items, _) = state {
            if let [first, second] = &items[..] {
                if let (Some(a), Some(b)) = (dict_problem(first), dict_problem(second)) {
                    return a.or(b);
                }
                if let Some(problem) = self.mapping_state(first).or_else(|| self.mapping_state(second)) {
                    return Some(problem);
                }
            }
        }
        if let Some(problem) = self.mapping_state(state) {
            return Some(problem);
        }
        if let Some(problem) = dict_problem(state) {
            return problem;
        }
        match shape {
            StateShape::Dict => Some(format!(
                "{}, where the class's role takes a dict of attributes",
                self.describe_value(state)
            )),
            StateShape::Any => self.match_data(state).err().map(|misfit| match misfit {
                Misfit::Role(import, _) => format!(
                    "it holds {}, which the policy allows only as {}",
                    self.shown(import),
                    self.role_words(import)
                ),
                Misfit::Shape(why) => why,
            }),
        }
    }

    /// A state that is a mapping object the pickle filled (an OrderedDict, a dict subclass):
    /// `setattr`/`**kwargs` take its items like a dict's, but they were never judged as one.
    pub(super) fn mapping_state(&self, state: &Value) -> Option<String> {
        let Value::Obj(id) = state else {
            return None;
        };
        let obj = self.tables.objects.get(*id as usize)?;
        let mapping = obj.flags & Obj::MAY_ITEMS != 0 && obj.flags & (Obj::TRUSTED | Obj::POISONED) == 0;
        mapping.then(|| {
            format!(
                "{}, a mapping object: its items would become attributes or keyword arguments without the \
                 state rules (a state is a dict)",
                self.describe_value(state)
            )
        })
    }

    /// A dict that becomes attributes: no special keys, only str keys, watched keys by rule.
    pub(super) fn dict_state_problem(&self, id: u32) -> Option<String> {
        let flags = self.tables.dicts.get(id as usize).map_or(0, |d| d.flags);
        if flags & DictInfo::SPECIAL_KEY != 0 {
            let key = self.tables.special.get(&id).map_or("__?", |k| &**k);
            return Some(format!(
                "it sets the attribute {key:?}; special names are looked up on the instance by pickle, copy and \
                 deepcopy, so a stored value would be called"
            ));
        }
        if flags & DictInfo::OPAQUE_KEY != 0 {
            return Some("it has keys that are not str constants (or too many to follow)".into());
        }
        if flags & DictInfo::WATCHED == 0 {
            return None;
        }
        for Watched { rule, value, .. } in self.watched_of(id) {
            if let Some(why) = self.rule_problem(&rule.rule, value) {
                return Some(format!(
                    "the attribute {:?} is {why}, where it must be {} ({})",
                    rule.key, rule.rule, rule.reason
                ));
            }
        }
        None
    }

    pub(super) fn rule_problem(&self, rule: &StateRule, value: &Value) -> Option<String> {
        let ok = match rule {
            StateRule::NoneOnly => matches!(value, Value::None),
            StateRule::OneOf(set) => {
                let in_set = |v: &Value| {
                    v.name_bytes()
                        .is_some_and(|t| set.iter().any(|s| s.as_bytes() == t))
                };
                match value {
                    Value::None => true,
                    Value::Tuple(items, _) => items.iter().all(in_set),
                    Value::List(id) => {
                        let known = self
                            .tables
                            .lists
                            .get(*id as usize)
                            .is_some_and(|l| l.strs || l.len == 0);
                        known
                            && self
                                .tables
                                .list_strs
                                .get(id)
                                .is_none_or(|items| items.iter().all(in_set))
                    }
                    other => in_set(other),
                }
            }
            StateRule::Empty => match value {
                Value::None | Value::EmptyTuple => true,
                Value::Dict(id) => self
                    .tables
                    .dicts
                    .get(*id as usize)
                    .is_some_and(|d| d.flags & DictInfo::NONEMPTY == 0),
                Value::List(id) => self.tables.lists.get(*id as usize).is_some_and(|l| l.len == 0),
                Value::Obj(id) => self.tables.objects.get(*id as usize).is_some_and(|o| {
                    o.flags & Obj::EMPTY_ODICT != 0
                        || (o.flags & Obj::HAS_ITEMS == 0 && self.obj_class_is(*id, "builtins", "set"))
                }),
                _ => false,
            },
            StateRule::NoCallable => match value {
                Value::Import(_) => false,
                Value::Obj(id) => self
                    .tables
                    .objects
                    .get(*id as usize)
                    .is_some_and(|o| o.flags & Obj::CALLABLE == 0),
                Value::Tuple(_, meta) => meta.storable && !self.tuple_holds_callable(value),
                _ => true,
            },
            StateRule::AttributePath => match value {
                Value::None => true,
                other => other.as_name().is_some_and(is_attribute_path),
            },
            StateRule::Bounded(max) => {
                let small = |v: &Value| match v {
                    Value::Int(n) => (*n as f64).abs() <= *max,
                    Value::Float(x) => x.abs() <= *max,
                    Value::Bool(_) | Value::None | Value::Name(_) | Value::ShortName(_) => true,
                    _ => false,
                };
                match value {
                    Value::Tuple(items, _) => items.iter().all(small),
                    Value::EmptyTuple => true,
                    other => small(other),
                }
            }
            StateRule::KeysIn(_) => match value {
                Value::None => true,
                Value::Dict(id) => self
                    .tables
                    .dicts
                    .get(*id as usize)
                    .is_some_and(|d| d.flags & (DictInfo::UNLISTED_KEY | DictInfo::OPAQUE_KEY) == 0),
                _ => false,
            },
            StateRule::BoundedProduct(max) => {
                let dim = |v: &Value| match v {
                    Value::Int(n) if *n >= 0 => Some(*n as f64),
                    Value::None => Some(1.0),
                    _ => None,
                };
                let product = match value {
                    Value::None | Value::EmptyTuple => Some(1.0),
                    Value::Tuple(items, _) => items.iter().try_fold(1.0, |acc, v| dim(v).map(|d| acc * d)),
                    other => dim(other),
                };
                product.is_some_and(|p| p <= *max)
            }
            StateRule::BoundedGrowth(max) => {
                let growth = |v: &Value| match v {
                    Value::Int(n) if *n >= 0 => Some(1.0 + *n as f64),
                    Value::Float(x) if *x >= 0.0 => Some(1.0 + x),
                    Value::None | Value::Name(_) | Value::ShortName(_) => Some(1.0),
                    _ => None,
                };
                let product = match value {
                    Value::EmptyTuple => Some(1.0),
                    Value::Tuple(items, _) => items.iter().try_fold(1.0, |acc, v| growth(v).map(|g| acc * g)),
                    // One number applies to every spatial dimension: counted for two.
                    other => growth(other).map(|g| g * g),
                };
                product.is_some_and(|p| p <= *max)
            }
            StateRule::SimpleRegex => match value {
                Value::None => true,
                other => other.as_name().is_some_and(is_simple_regex),
            },
            StateRule::TzName => match value {
                // The same key holds dtype strings ("U8"): their item size is bounded too.
                Value::Name(_) | Value::ShortName(_) => value.as_name().is_some_and(|text| {
                    is_safe_tz_name(text)
                        && dtype_itemsize(text).is_none_or(|size| size <= MAX_DTYPE_ITEMSIZE)
                }),
                Value::Text | Value::TextAt { .. } => false,
                // A str made at load time is a name the scanner cannot read.
                Value::Obj(id) => self.obj_flags(*id) & Obj::STR_LIKE == 0,
                _ => true,
            },
            StateRule::Hooks(_) => match value {
                Value::None | Value::EmptyTuple => true,
                hook if self.is_hook_object(hook) => true,
                Value::Dict(id) => self
                    .tables
                    .dicts
                    .get(*id as usize)
                    .is_some_and(|d| d.flags & DictInfo::NONEMPTY == 0),
                Value::Obj(id) => self.tables.objects.get(*id as usize).is_some_and(|o| {
                    o.flags & Obj::EMPTY_ODICT != 0
                        || (self.obj_class_is(*id, "collections", "OrderedDict")
                            && o.flags & Obj::HOOK_ITEMS != 0)
                }),
                _ => false,
            },
        };
        (!ok).then(|| self.describe_value(value))
    }

    pub(super) fn tuple_holds_callable(&self, value: &Value) -> bool {
        match value {
            Value::Tuple(items, _) => items.iter().any(|v| match v {
                Value::Import(_) => true,
                Value::Obj(id) => self
                    .tables
                    .objects
                    .get(*id as usize)
                    .is_none_or(|o| o.flags & Obj::CALLABLE != 0),
                Value::Tuple(..) => self.tuple_holds_callable(v),
                _ => false,
            }),
            _ => false,
        }
    }

    // -----------------------------------------------------------------------------------
    // Nested files

    pub(super) fn note_nested(
        &mut self,
        offset: u64,
        at: u64,
        len: u64,
        latin1_text: bool,
        inline: Option<Vec<u8>>,
    ) {
        if self.report.nested.len() < self.limits.max_records {
            self.report.nested.push(crate::analyzer::NestedFile {
                offset,
                at,
                len,
                latin1_text,
                pickle: self.pickle_index(),
                inline,
            });
        }
    }
}

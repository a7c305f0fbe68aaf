//! Argument kinds (`Kind`) matched against values, and what a call returns: the object a
//! call's result schema makes.

use super::*;

impl<'p> Analyzer<'p> {
    pub(super) fn match_kind(
        &mut self,
        offset: u64,
        kind: &Kind,
        value: &Value,
        args: &[Value],
    ) -> Result<(), Misfit> {
        let shape = |this: &Self| Err(Misfit::Shape(this.describe_value(value)));
        match kind {
            Kind::Str { max, one_of } => match value.name_bytes() {
                Some(text) if text.len() <= *max => match one_of {
                    Some(set) if !set.iter().any(|s| s.as_bytes() == text) => shape(self),
                    _ => Ok(()),
                },
                _ => shape(self),
            },
            Kind::Bytes { max } => match value {
                Value::Bytes { len, .. } if len <= max => Ok(()),
                Value::Obj(id) if self.obj_class_is(*id, "_codecs", "encode") => {
                    let len = self.obj_text(*id).map_or(u64::MAX, |t| t.len);
                    if len <= *max {
                        Ok(())
                    } else {
                        shape(self)
                    }
                }
                _ => shape(self),
            },
            Kind::BigInt { max } => match value {
                Value::Int(_) | Value::Bool(_) => Ok(()),
                Value::Long(len) if len <= max => Ok(()),
                _ => shape(self),
            },
            Kind::Text => match value {
                Value::Name(_) | Value::ShortName(_) | Value::Text | Value::TextAt { .. } => Ok(()),
                _ => shape(self),
            },
            Kind::FractionStr => match value.as_name() {
                Some(text) if is_fraction_str(text) => Ok(()),
                _ => shape(self),
            },
            // Judged against the object they are the state of (see `build_obj`).
            Kind::NdarrayState | Kind::DtypeState => shape(self),
            Kind::Int { min, max } => {
                let v = match value {
                    Value::Int(v) => Some(*v),
                    Value::Bool(b) => Some(i64::from(*b)),
                    _ => None,
                };
                match v {
                    Some(v) if v >= *min && v <= *max => Ok(()),
                    _ => shape(self),
                }
            }
            Kind::Bool(want) => {
                let v = match value {
                    Value::Bool(b) => Some(*b),
                    Value::Int(0) => Some(false),
                    Value::Int(1) => Some(true),
                    _ => None,
                };
                match (v, want) {
                    (Some(_), None) => Ok(()),
                    (Some(v), Some(w)) if v == *w => Ok(()),
                    _ => shape(self),
                }
            }
            Kind::Float => match value {
                Value::Float(_) | Value::Int(_) => Ok(()),
                _ => shape(self),
            },
            Kind::None => match value {
                Value::None => Ok(()),
                _ => shape(self),
            },
            Kind::Ints { max } => match value {
                Value::EmptyTuple => Ok(()),
                Value::Tuple(items, _)
                    if items.len() <= *max && items.iter().all(|v| matches!(v, Value::Int(n) if *n >= 0)) =>
                {
                    Ok(())
                }
                _ => shape(self),
            },
            Kind::Decimal => match value.as_name() {
                Some(text) if is_bounded_decimal(text) => Ok(()),
                _ => shape(self),
            },
            Kind::List => match value {
                Value::List(_) => Ok(()),
                _ => shape(self),
            },
            Kind::Dict => match value {
                Value::Dict(_) => Ok(()),
                _ => shape(self),
            },
            Kind::Empty => {
                let empty = match value {
                    Value::EmptyTuple => true,
                    Value::List(id) => self.tables.lists.get(*id as usize).is_some_and(|l| l.len == 0),
                    Value::Dict(id) => self
                        .tables
                        .dicts
                        .get(*id as usize)
                        .is_some_and(|d| d.flags & DictInfo::NONEMPTY == 0),
                    _ => false,
                };
                if empty {
                    Ok(())
                } else {
                    shape(self)
                }
            }
            Kind::EmptyOrderedDict => match value {
                Value::Obj(id)
                    if self
                        .tables
                        .objects
                        .get(*id as usize)
                        .is_some_and(|o| o.flags & Obj::EMPTY_ODICT != 0) =>
                {
                    Ok(())
                }
                _ => Err(Misfit::Shape(format!(
                    "{} (hooks must be an empty OrderedDict(): real files hold none)",
                    self.describe_value(value)
                ))),
            },
            Kind::Data => self.match_data(value),
            Kind::Object => match value {
                Value::Obj(_) => Ok(()),
                _ => shape(self),
            },
            Kind::State => match self.state_problem(value, StateShape::Any) {
                Some(problem) => Err(Misfit::Shape(problem)),
                None => {
                    self.freeze_state(value);
                    Ok(())
                }
            },
            Kind::Pid => match value {
                Value::Persistent | Value::Storage(_) => Ok(()),
                _ => shape(self),
            },
            Kind::Class(names) | Kind::Callable(names) => match value {
                Value::Import(index) if !self.is_refused(*index) && self.import_is(*index, names) => Ok(()),
                Value::Import(index) if self.is_refused(*index) => Ok(()),
                _ => shape(self),
            },
            Kind::Reconstructable => match value {
                Value::Import(index) => {
                    let index = *index;
                    let ok = self.is_refused(index)
                        || self.is_trusted(index)
                        || self.roles_of(index).is_some_and(|r| r.reconstruct.is_some());
                    if ok {
                        Ok(())
                    } else {
                        Err(Misfit::Role(index, "as the class to reconstruct"))
                    }
                }
                _ => shape(self),
            },
            Kind::Result(names) => match value {
                Value::Obj(id) => {
                    let ok = self.tables.objects.get(*id as usize).is_some_and(|o| {
                        o.flags & Obj::POISONED != 0
                            || (o.class != NO_CLASS && self.import_is(o.class, names))
                            || (o.maker != NO_CLASS && self.import_is(o.maker, names))
                    });
                    if ok {
                        Ok(())
                    } else {
                        shape(self)
                    }
                }
                _ => shape(self),
            },
            Kind::ArgsOf(slot) => {
                let callee = match args.get(*slot) {
                    Some(Value::Import(index)) => *index,
                    _ => {
                        return Err(Misfit::Shape(
                            "arguments for a callee the scanner cannot see".into(),
                        ))
                    }
                };
                if self.is_refused(callee) {
                    return Ok(());
                }
                let items: Vec<Value> = match value {
                    Value::Tuple(items, _) => items.to_vec(),
                    Value::EmptyTuple => Vec::new(),
                    _ => return shape(self),
                };
                if self.is_trusted(callee) {
                    return items.iter().try_for_each(|v| self.match_data(v));
                }
                let Some(schema) = self.roles_of(callee).and_then(|r| r.call.as_deref()) else {
                    return Err(Misfit::Role(callee, "to be called by it"));
                };
                self.match_args(offset, &schema.args, &items, &schema.checks)
                    .map_err(|misfit| match misfit {
                        Misfit::Shape(why) => Misfit::Shape(format!(
                            "arguments for {} that its schema does not allow: {why}",
                            self.shown(callee)
                        )),
                        role => role,
                    })
            }
            Kind::Tuple(inner) => {
                let items: Vec<Value> = match value {
                    Value::Tuple(items, _) => items.to_vec(),
                    Value::EmptyTuple => Vec::new(),
                    _ => return shape(self),
                };
                self.match_args(offset, inner, &items, &[])
            }
            Kind::TorchFile => match value {
                Value::Bytes { at, len, .. } => {
                    self.note_nested(offset, *at, *len, false, None);
                    Ok(())
                }
                Value::Obj(id) if self.obj_class_is(*id, "_codecs", "encode") => {
                    let (at, len, text) = self.obj_text(*id).map_or((u64::MAX, 0, None), |t| {
                        (t.at.unwrap_or(u64::MAX), t.len, t.text.clone())
                    });
                    // A short str has no position kept, but its text.
                    let inline =
                        text.and_then(|t| t.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect());
                    self.note_nested(offset, at, len, true, inline);
                    Ok(())
                }
                _ => shape(self),
            },
        }
    }

    /// Plain data: no import that may not be stored, nothing the scanner cannot see into.
    pub(super) fn match_data(&self, value: &Value) -> Result<(), Misfit> {
        match value {
            Value::Import(index) if !self.import_storable(*index) => {
                Err(Misfit::Role(*index, "as a plain-data argument"))
            }
            Value::Tuple(items, meta) if !meta.storable => {
                for item in items.iter() {
                    self.match_data(item)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `(storage, offset, size, stride)`: the elements the view reaches lie in the storage.
    pub(super) fn check_tensor_view(&self, args: &[Value]) -> Result<(), String> {
        let numel = match args.first() {
            Some(Value::Storage(numel)) => Some(*numel),
            // A storage the loader makes from nested bytes: its size is checked there.
            _ => None,
        };
        let offset = match args.get(1) {
            Some(Value::Int(v)) if *v >= 0 => *v as u64,
            _ => return Err("the storage offset is not a non-negative int".into()),
        };
        let (Some(size), Some(stride)) = (args.get(2).and_then(dims), args.get(3).and_then(dims)) else {
            return Err("the size and stride are not tuples of non-negative ints".into());
        };
        if size.len() != stride.len() {
            return Err(format!(
                "the size has {} dimensions and the stride {}",
                size.len(),
                stride.len()
            ));
        }
        let Some(numel) = numel else {
            return Ok(());
        };
        if size.iter().any(|n| n == 0) {
            return if offset <= numel {
                Ok(())
            } else {
                Err(format!(
                    "the storage offset {offset} lies beyond its {numel} elements"
                ))
            };
        }
        // The last element the view reaches: offset + sum((size - 1) * stride).
        let last = size.iter().zip(stride.iter()).try_fold(offset, |acc, (n, s)| {
            (n - 1).checked_mul(s).and_then(|d| acc.checked_add(d))
        });
        match last {
            Some(last) if last < numel => Ok(()),
            _ => Err(format!(
                "the view (offset {offset}, size {size:?}, stride {stride:?}) reaches beyond the storage's \
                 {numel} elements (an out-of-bounds read)"
            )),
        }
    }

    pub(super) fn call_result(
        &mut self,
        offset: u64,
        index: u32,
        schema: &'p CallSchema,
        args: &[Value],
    ) -> Value {
        let result = self.call_result_object(offset, index, schema, args);
        if let Value::Obj(id) = result {
            if self.import_is_named(index, "functools", "partial") {
                self.note_partial(id, args);
            }
        }
        for check in &schema.checks {
            match (check, &result) {
                (Check::ShapeOf(slot), Value::Obj(id)) => {
                    if let Some(numel) = args.get(*slot).and_then(shape_numel) {
                        self.set_numel(*id, numel);
                    }
                }
                (Check::OwnBuffer(slot), _) => self.own_buffer_result(offset, index, args, *slot, &result),
                _ => {}
            }
        }
        result
    }

    pub(super) fn call_result_object(
        &mut self,
        offset: u64,
        index: u32,
        schema: &'p CallSchema,
        args: &[Value],
    ) -> Value {
        let callable = if schema.callable_result { Obj::CALLABLE } else { 0 };
        match &schema.result {
            ResultSpec::Value => {
                let mut obj = Obj::new(offset, index, callable | self.result_flags(index));
                obj.schema = Some(schema);
                let text = match args.first() {
                    // Kept: what encode made (bytes checked by length), the alias of an Arrow type.
                    _ if !self.import_is_named(index, "_codecs", "encode")
                        && !self.import_is_named(index, "pyarrow.lib", "type_for_alias") =>
                    {
                        None
                    }
                    Some(Value::TextAt { at, len }) => Some(ObjText {
                        at: Some(*at),
                        len: *len,
                        text: None,
                    }),
                    Some(other) => other.as_name().map(|text| ObjText {
                        at: None,
                        len: text.chars().count() as u64,
                        text: Some(Rc::from(text)),
                    }),
                    None => None,
                };
                let value = self.new_obj(obj);
                if let (Some(text), Value::Obj(id)) = (text, &value) {
                    self.tables.texts.insert(*id, text);
                }
                value
            }
            ResultSpec::Fresh { items, .. } => {
                let mut flags = Obj::MAY_BUILD | callable;
                if *items {
                    flags |= Obj::MAY_ITEMS;
                }
                if args.is_empty() && self.import_is_named(index, "collections", "OrderedDict") {
                    flags |= Obj::EMPTY_ODICT;
                }
                let mut obj = Obj::new(offset, index, flags);
                obj.schema = Some(schema);
                // `numpy.dtype(numpy.record, ...)`: a structured (void) dtype, kind 'V'.
                let text = match args.first() {
                    Some(Value::Import(class)) if self.is_record_class(*class) => Some("V"),
                    other => other.and_then(Value::as_name),
                }
                .map(|text| ObjText {
                    text: Some(Rc::from(text)),
                    ..ObjText::default()
                });
                let value = self.new_obj(obj);
                if let (Some(text), Value::Obj(id)) = (text, &value) {
                    self.tables.texts.insert(*id, text);
                }
                value
            }
            ResultSpec::New { slot, .. } => {
                let class = match args.get(*slot) {
                    Some(Value::Import(class)) => *class,
                    _ => return self.poisoned(offset, index),
                };
                if self.is_refused(class) || self.is_trusted(class) {
                    let flags = Obj::MAY_BUILD | Obj::MAY_ITEMS | Obj::CALLABLE | Obj::TRUSTED;
                    return self.new_obj(Obj::new(offset, class, flags));
                }
                let role = self.roles_of(class).and_then(|r| r.reconstruct);
                let mut flags = Obj::MAY_BUILD;
                if role.is_some_and(|r| r.items) {
                    flags |= Obj::MAY_ITEMS;
                }
                if role.is_some_and(|r| r.callable) {
                    flags |= Obj::CALLABLE;
                }
                // `_reconstructor(cls, str, text)`, `__newobj__(cls, text)`: a str subclass.
                if args
                    .get(1..)
                    .unwrap_or_default()
                    .iter()
                    .any(|a| self.is_str_like(a))
                {
                    flags |= Obj::STR_LIKE;
                }
                let mut obj = Obj::new(offset, class, flags);
                obj.maker = index;
                obj.schema = Some(schema);
                obj.reconstruct = role;
                self.new_obj(obj)
            }
            ResultSpec::Attribute => {
                let (Some(Value::Import(owner)), Some(attribute)) =
                    (args.first(), args.get(1).and_then(Value::as_name))
                else {
                    return self.poisoned(offset, index);
                };
                let Some(owner) = self.import_name(*owner) else {
                    return self.poisoned(offset, index);
                };
                let dotted = format!("{}.{attribute}", owner.name);
                self.import(offset, Opcode::Reduce, &owner.module, &dotted)
            }
        }
    }

    /// Flags a value-returning call gives its result: numpy's `scalar` may return a `str_`.
    pub(super) fn result_flags(&self, index: u32) -> u16 {
        let Some(target) = self.table.get(index as usize).and_then(|e| e.target.as_ref()) else {
            return 0;
        };
        match (&*target.module, &*target.name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Obj::STR_LIKE,
            _ => 0,
        }
    }

    /// A str, or something made at load time that may be one.
    pub(super) fn is_str_like(&self, value: &Value) -> bool {
        match value {
            Value::Name(_) | Value::ShortName(_) | Value::Text | Value::TextAt { .. } => true,
            Value::Import(index) => self.import_is_named(*index, "builtins", "str"),
            Value::Obj(id) => self.obj_flags(*id) & Obj::STR_LIKE != 0,
            _ => false,
        }
    }

    pub(super) fn import_is_named(&self, index: u32, module: &str, name: &str) -> bool {
        self.table
            .get(index as usize)
            .and_then(|e| e.target.as_ref())
            .is_some_and(|t| &*t.module == module && &*t.name == name)
    }

    /// `numpy.record`, the scalar type of structured arrays, under any of its module paths.
    pub(super) fn is_record_class(&self, index: u32) -> bool {
        ["numpy", "numpy._core.records", "numpy.core.records"]
            .iter()
            .any(|module| self.import_is_named(index, module, "record"))
    }
}

//! Calls and constructions (REDUCE, OBJ, INST, NEWOBJ, NEWOBJ_EX): the callee's role, its
//! argument schema, and the checks of particular argument shapes.

use super::*;

impl<'p> Analyzer<'p> {
    // -----------------------------------------------------------------------------------
    // Calls and constructions

    /// REDUCE, OBJ, INST (a call of `callable`), NEWOBJ, NEWOBJ_EX (`cls.__new__`): checks the
    /// use against the callee's role and returns the result.
    pub(in crate::analyzer) fn call_op(
        &mut self,
        offset: u64,
        opcode: Opcode,
        callable: &Value,
        args: CallArgs<'_>,
        kwargs: Option<&Value>,
    ) -> Value {
        let index = match callable {
            Value::Import(index) => *index,
            Value::Unknown => return self.poisoned(offset, NO_CLASS),
            _ => {
                // Calling something that is not an import: reported by `call`.
                return self.poisoned(offset, NO_CLASS);
            }
        };
        if self.is_refused(index) {
            return self.poisoned(offset, index);
        }
        let new_object = match args {
            CallArgs::New(_) => true,
            // OBJ/INST without arguments is `cls.__new__(cls)`.
            CallArgs::Items(items) => items.is_empty(),
            CallArgs::Reduce(_) => false,
        };
        let positional: Option<&[Value]> = match args {
            CallArgs::Reduce(Value::Tuple(items, _)) | CallArgs::New(Value::Tuple(items, _)) => Some(items),
            CallArgs::Reduce(Value::EmptyTuple) | CallArgs::New(Value::EmptyTuple) => Some(&[]),
            CallArgs::Reduce(_) | CallArgs::New(_) => None,
            CallArgs::Items(items) => Some(items),
        };
        if self.is_trusted(index) {
            for arg in positional.into_iter().flatten() {
                self.store(offset, arg, None);
            }
            let flags = Obj::MAY_BUILD | Obj::MAY_ITEMS | Obj::CALLABLE | Obj::TRUSTED;
            return self.new_obj(Obj::new(offset, index, flags));
        }
        let Some(roles) = self.roles_of(index) else {
            return self.poisoned(offset, index);
        };
        if new_object {
            if let Some(role) = roles.reconstruct {
                return self.construct(offset, opcode, index, role, positional, kwargs);
            }
            if opcode == Opcode::NewObj || opcode == Opcode::NewObjEx {
                let message = format!(
                    "{} at offset {offset} constructs {} (cls.__new__), which the policy allows only as {}",
                    opcode.name(),
                    self.shown(index),
                    self.role_words(index)
                );
                self.role_finding(offset, index, message);
                return self.poisoned(offset, index);
            }
        }
        let Some(schema) = roles.call.as_deref() else {
            let message = format!(
                "{} at offset {offset} calls {}, which the policy allows only as {}",
                opcode.name(),
                self.shown(index),
                self.role_words(index)
            );
            self.role_finding(offset, index, message);
            return self.poisoned(offset, index);
        };
        let Some(args) = positional else {
            self.argument_finding(
                offset,
                opcode,
                index,
                "its arguments are not a tuple the scanner can read (too large, or not a tuple)".into(),
            );
            return self.poisoned(offset, index);
        };
        match self.check_call(offset, opcode, index, schema, args) {
            Ok(()) => self.call_result(offset, index, schema, args),
            Err(()) => self.poisoned(offset, index),
        }
    }

    pub(super) fn argument_finding(&mut self, offset: u64, opcode: Opcode, index: u32, problem: String) {
        let name = self.import_name(index);
        let shown = self.shown(index);
        self.finding(
            FindingKind::ArgumentViolation,
            Severity::Critical,
            offset,
            name,
            format!(
                "{} at offset {offset} calls {shown} with arguments its schema does not allow: {problem}",
                opcode.name()
            ),
        );
    }

    /// `cls.__new__(cls, *args)` of a class with the reconstruct role.
    pub(super) fn construct(
        &mut self,
        offset: u64,
        opcode: Opcode,
        class: u32,
        role: Reconstruct,
        args: Option<&[Value]>,
        kwargs: Option<&Value>,
    ) -> Value {
        let no_kwargs = kwargs.is_none_or(|k| match k {
            Value::Dict(id) => self
                .tables
                .dicts
                .get(*id as usize)
                .is_some_and(|d| d.flags & DictInfo::NONEMPTY == 0),
            Value::None => true,
            _ => false,
        });
        let plain_args = match args {
            Some([]) => no_kwargs,
            Some(items) => role.newargs && items.iter().all(|v| !self.needs_store_check(v)),
            None => false,
        };
        if !plain_args || (!no_kwargs && !role.newargs) {
            let message = format!(
                "{} at offset {offset} passes arguments to {}.__new__; the policy allows it only as a class \
                 reconstructed without arguments",
                opcode.name(),
                self.shown(class)
            );
            self.role_finding(offset, class, message);
            return self.poisoned(offset, class);
        }
        let mut obj = Obj::new(offset, class, Obj::MAY_BUILD);
        if args.unwrap_or_default().iter().any(|a| self.is_str_like(a)) {
            obj.flags |= Obj::STR_LIKE;
        }
        for arg in args.unwrap_or_default() {
            self.freeze(arg);
        }
        obj.reconstruct = Some(role);
        if role.items {
            obj.flags |= Obj::MAY_ITEMS;
        }
        if role.callable {
            obj.flags |= Obj::CALLABLE;
        }
        self.new_obj(obj)
    }

    /// Checks `args` against `schema`; reports the first misfit.
    pub(super) fn check_call(
        &mut self,
        offset: u64,
        opcode: Opcode,
        index: u32,
        schema: &CallSchema,
        args: &[Value],
    ) -> Result<(), ()> {
        if let Err(misfit) = self.match_args(offset, &schema.args, args, &schema.checks) {
            self.report_misfit(offset, opcode, index, misfit);
            return Err(());
        }
        Ok(())
    }

    /// The finding for arguments of a call of `index` that do not fit its schema.
    pub(super) fn report_misfit(&mut self, offset: u64, opcode: Opcode, index: u32, misfit: Misfit) {
        match misfit {
            Misfit::Role(import, why) => {
                let message = format!(
                    "{} at offset {offset} passes {} to {} {why}, which the policy allows only as {}",
                    opcode.name(),
                    self.shown(import),
                    self.shown(index),
                    self.role_words(import)
                );
                self.role_finding(offset, import, message);
            }
            Misfit::Shape(problem) => self.argument_finding(offset, opcode, index, problem),
        }
    }

    pub(super) fn match_args(
        &mut self,
        offset: u64,
        spec: &Args,
        args: &[Value],
        checks: &[Check],
    ) -> Result<(), Misfit> {
        if !spec.accepts_count(args.len()) {
            let expected = if spec.rest {
                format!("at least {}", spec.required())
            } else if spec.required() == spec.items.len() {
                format!("{}", spec.items.len())
            } else {
                format!("{} to {}", spec.required(), spec.items.len())
            };
            return Err(Misfit::Shape(format!(
                "{} arguments, where it takes {expected} ({spec})",
                args.len()
            )));
        }
        for (i, arg) in args.iter().enumerate() {
            let Some(arg_spec) = spec.spec(i) else {
                return Err(Misfit::Shape(format!("argument {i} is not expected")));
            };
            self.match_arg(offset, arg_spec, arg, args)
                .map_err(|misfit| match misfit {
                    Misfit::Shape(why) => {
                        Misfit::Shape(format!("argument {i} is {why}; expected {arg_spec}"))
                    }
                    role => role,
                })?;
        }
        for check in checks {
            match check {
                Check::TensorView => self.check_tensor_view(args).map_err(Misfit::Shape)?,
                Check::NewArgs => self.check_newargs(args)?,
                Check::TreeArgs => self.check_tree_args(args).map_err(Misfit::Shape)?,
                Check::ArrowBuffers => self.check_arrow_buffers(args).map_err(Misfit::Shape)?,
                Check::ShapeOf(_) => {}
                Check::OwnBuffer(slot) => self.check_own_buffer(args, *slot).map_err(Misfit::Shape)?,
                Check::BaseItems => self.check_base_items(args).map_err(Misfit::Shape)?,
                Check::RangeLen(max) => check_range_len(args, *max).map_err(Misfit::Shape)?,
                Check::RangeState(max) => self.check_range_state(args, *max).map_err(Misfit::Shape)?,
                Check::DtypeSize(max) => match args.first().and_then(Value::as_name).and_then(dtype_itemsize) {
                    Some(size) if size > *max => {
                        return Err(Misfit::Shape(format!(
                            "a dtype of {size} bytes an element (at most {max}): arrays of it allocate that much \
                             per element when they are made or filled"
                        )))
                    }
                    _ => {}
                },
            }
        }
        // The callee may keep what it was given: nothing judged here may change afterwards.
        for arg in args {
            self.freeze(arg);
        }
        Ok(())
    }

    /// `copyreg._reconstructor(cls, dict, state)`: `dict.__init__(obj, state)` makes the state's
    /// entries the object's items, where a special name would answer a lookup of a special method.
    pub(super) fn check_base_items(&self, args: &[Value]) -> Result<(), String> {
        let dict_base = matches!(args.get(1), Some(Value::Import(base)) if self.import_is_named(*base, "builtins", "dict"));
        if !dict_base {
            return Ok(());
        }
        // dict.__init__ takes any iterable of pairs; copyreg writes a dict (or None).
        let id = match args.get(2) {
            Some(Value::Dict(id)) => id,
            None | Some(Value::None) => return Ok(()),
            Some(other) => {
                return Err(format!(
                    "the items of a dict subclass are {}, not a dict whose keys can be judged",
                    self.describe_value(other)
                ))
            }
        };
        let flags = self.tables.dicts.get(*id as usize).map_or(0, |d| d.flags);
        if flags & DictInfo::SPECIAL_KEY != 0 {
            let key = self.tables.special.get(id).map_or("__?", |k| &**k);
            return Err(format!(
                "the items of a dict subclass include the special name {key:?}"
            ));
        }
        if flags & DictInfo::MADE_KEY != 0 {
            return Err(
                "the items of a dict subclass have keys made at load time (which may equal a special name)"
                    .into(),
            );
        }
        Ok(())
    }

    /// `_new_Index(RangeIndex, state)`: the range the state's start, stop and step make is
    /// bounded like `range` itself (the index materialises it when the library uses it).
    pub(super) fn check_range_state(&self, args: &[Value], max: u64) -> Result<(), String> {
        let range_class = matches!(args.first(), Some(Value::Import(class))
            if ["pandas", "pandas.core.indexes.range"]
                .iter()
                .any(|module| self.import_is_named(*class, module, "RangeIndex")));
        let Some(Value::Dict(id)) = args.get(1).filter(|_| range_class) else {
            return Ok(());
        };
        // Newest first: the first value seen for a key is the one the dict keeps.
        let mut bounds: [Option<Value>; 3] = [None, None, None];
        for watched in self.watched_of(*id) {
            let slot = match &*watched.rule.key {
                "start" => 0,
                "stop" => 1,
                "step" => 2,
                _ => continue,
            };
            if let Some(bound @ None) = bounds.get_mut(slot) {
                *bound = Some(watched.value.clone());
            }
        }
        let [start, stop, step] = bounds.map(|b| b.filter(|v| !matches!(v, Value::None)));
        let args = [
            start.unwrap_or(Value::Int(0)),
            stop.unwrap_or(Value::Int(0)),
            step.unwrap_or(Value::Int(1)),
        ];
        check_range_len(&args, max)
    }

    /// Marks a container (or the containers in a tuple) as judged: later items or BUILDs on it
    /// are refused.
    pub(super) fn freeze(&mut self, value: &Value) {
        match value {
            Value::Dict(id) => {
                if let Some(dict) = self.tables.dicts.get_mut(*id as usize) {
                    dict.flags |= DictInfo::FROZEN;
                }
            }
            Value::List(id) => {
                if let Some(list) = self.tables.lists.get_mut(*id as usize) {
                    list.frozen = true;
                }
            }
            Value::Obj(id) => {
                if let Some(obj) = self.tables.objects.get_mut(*id as usize) {
                    obj.flags |= Obj::FROZEN;
                }
            }
            Value::Tuple(items, _) => {
                for item in items.iter() {
                    self.freeze(item);
                }
            }
            _ => {}
        }
    }

    /// `__newobj__(cls, *args)` / `__newobj_ex__(cls, args, kwargs)`: arguments to `__new__`
    /// only for a class whose role takes them.
    pub(super) fn check_newargs(&self, args: &[Value]) -> Result<(), Misfit> {
        let Some(Value::Import(class)) = args.first() else {
            return Ok(());
        };
        let class = *class;
        if self.is_refused(class) || self.is_trusted(class) {
            return Ok(());
        }
        let newargs = self
            .roles_of(class)
            .and_then(|r| r.reconstruct)
            .is_some_and(|r| r.newargs);
        let empty = |v: &Value| match v {
            Value::EmptyTuple | Value::None => true,
            Value::Dict(id) => self
                .tables
                .dicts
                .get(*id as usize)
                .is_some_and(|d| d.flags & DictInfo::NONEMPTY == 0),
            _ => false,
        };
        let rest = args.get(1..).unwrap_or_default();
        // `__newobj_ex__` passes (args, kwargs); `__newobj__` the arguments themselves.
        let no_args = rest.iter().all(empty);
        if no_args || newargs {
            Ok(())
        } else {
            Err(Misfit::Role(class, "with arguments for its __new__"))
        }
    }

    /// `Tree(n_features, n_classes, n_outputs)` copies `n_outputs` entries of `n_classes`.
    pub(super) fn check_tree_args(&self, args: &[Value]) -> Result<(), String> {
        let n_outputs = match args.get(2) {
            Some(Value::Int(n)) => *n,
            _ => return Err("n_outputs is not an int".into()),
        };
        let numel = match args.get(1) {
            Some(Value::Obj(id)) => self
                .tables
                .objects
                .get(*id as usize)
                .map(|o| o.numel)
                .filter(|n| *n != u64::MAX),
            _ => None,
        };
        match numel {
            Some(numel) if i64::try_from(numel).is_ok_and(|n| n == n_outputs) => Ok(()),
            Some(numel) => Err(format!(
                "n_classes holds {numel} elements but n_outputs is {n_outputs} (Tree reads n_outputs of them)"
            )),
            None => Err("n_classes is not an array whose size the scanner knows".into()),
        }
    }

    /// `_restore_array((type, length, nulls, offset, buffers, ...))`: exactly the buffers the
    /// type's layout has. pyarrow indexes them by position while it makes the array, before
    /// anything could validate it (too few: it reads past the list and crashes the load).
    pub(super) fn check_arrow_buffers(&self, args: &[Value]) -> Result<(), String> {
        let Some(Value::Tuple(fields, _)) = args.first() else {
            return Err("the array's data is not a tuple".into());
        };
        let alias = match fields.first() {
            Some(Value::Obj(id)) => self.obj_text(*id).and_then(|t| t.text.clone()),
            _ => None,
        }
        .ok_or("a type whose alias the scanner does not know")?;
        let count = match fields.get(4) {
            Some(Value::List(id)) => self.tables.lists.get(*id as usize).map(|l| l.len),
            _ => None,
        }
        .ok_or("buffers that are not a list")?;
        if crate::policy::arrow::buffers_fit(&alias, count) {
            Ok(())
        } else {
            Err(format!(
                "{count} buffers for a {alias} array (pyarrow reads its layout's buffers by position)"
            ))
        }
    }

    pub(super) fn match_arg(
        &mut self,
        offset: u64,
        spec: &ArgSpec,
        value: &Value,
        args: &[Value],
    ) -> Result<(), Misfit> {
        let mut first = None;
        for kind in &spec.kinds {
            match self.match_kind(offset, kind, value, args) {
                Ok(()) => return Ok(()),
                Err(misfit) => {
                    // A role misfit is the most telling; otherwise the first kind's reason.
                    let replace = matches!(
                        (&first, &misfit),
                        (None, _) | (Some(Misfit::Shape(_)), Misfit::Role(..))
                    );
                    if replace {
                        first = Some(misfit);
                    }
                }
            }
        }
        Err(first.unwrap_or_else(|| Misfit::Shape("not any kind the schema names".into())))
    }

    pub(super) fn describe_value(&self, value: &Value) -> String {
        match value {
            Value::Import(index) => format!("the import {}", self.shown(*index)),
            Value::Obj(id) => {
                let class = self
                    .tables
                    .objects
                    .get(*id as usize)
                    .map_or(NO_CLASS, |o| o.class);
                format!("the result of {}", self.made_by(class))
            }
            Value::Int(v) => format!("the int {v}"),
            Value::Long(n) => format!("an int of {n} bytes"),
            Value::Bytes { len, .. } => format!("{len} bytes"),
            Value::Name(_) | Value::ShortName(_) => {
                let text = value.as_name().unwrap_or_default();
                let shown: String = text.chars().take(60).collect();
                format!("the str {shown:?}")
            }
            Value::Tuple(items, _) => format!("a tuple of {}", items.len()),
            other => format!("a {}", other.what()),
        }
    }

    pub(super) fn import_is(&self, index: u32, names: &[crate::policy::roles::Name]) -> bool {
        self.table
            .get(index as usize)
            .and_then(|e| e.target.as_ref())
            .is_some_and(|t| names.iter().any(|n| n.is(&t.module, &t.name)))
    }

    pub(super) fn obj_class_is(&self, id: u32, module: &str, name: &str) -> bool {
        self.tables
            .objects
            .get(id as usize)
            .filter(|o| o.class != NO_CLASS && o.flags & Obj::POISONED == 0)
            .and_then(|o| self.table.get(o.class as usize))
            .and_then(|e| e.target.as_ref())
            .is_some_and(|t| &*t.module == module && &*t.name == name)
    }
}

//! `functools.partial`: a partial the pickle made and then calls (pandas 1.3 pickles every
//! block as `partial(new_block, ndim=2)(values, placement)`). The call is judged as the call
//! of the function it wraps: `func(*args, *call_args, **keywords)` against `func`'s schema,
//! keywords by name. The keywords are a dict the pickle made, so the dicts made while a
//! partial waits for its state keep their items (a few, bounded).

use super::*;

/// A `functools.partial` the pickle made: what a call of it calls.
#[derive(Debug, Clone)]
pub(in crate::analyzer) struct Partial {
    /// The wrapped function (an import).
    func: u32,
    /// Its positional arguments, before the call's own.
    args: Rc<[Value]>,
    /// Its keyword arguments, a dict the pickle made (`None`: none).
    keywords: Option<u32>,
}

/// Items a kept dict may hold, kept dict items in all, and dicts kept; past any, a dict's items
/// are unknown (a partial given it as keywords is refused).
const MAX_KEPT_DICT_LEN: usize = 32;
const MAX_KEPT_ITEMS: usize = 1 << 16;
const MAX_KEPT_DICTS: usize = 1 << 14;

impl Partial {
    /// The wrapped function (an import index).
    pub(in crate::analyzer) fn func(&self) -> u32 {
        self.func
    }
}

impl<'p> Analyzer<'p> {
    /// After `functools.partial(func, *args)` made object `id`.
    pub(super) fn note_partial(&mut self, id: u32, args: &[Value]) {
        let Some((Value::Import(func), rest)) = args.split_first() else {
            return;
        };
        let partial = Partial {
            func: *func,
            args: Rc::from(rest),
            keywords: None,
        };
        self.tables.partials.insert(id, partial);
        self.tables.open_partials = self.tables.open_partials.saturating_add(1);
    }

    /// BUILD of partial `id` with a state that fit its schema: CPython's `partial.__setstate__`
    /// takes `(func, args, keywords, dict)` as they are.
    pub(super) fn set_partial_state(&mut self, id: u32, state: &Value) {
        if self.tables.partials.remove(&id).is_none() {
            return;
        }
        self.tables.open_partials = self.tables.open_partials.saturating_sub(1);
        let Value::Tuple(items, _) = state else {
            return;
        };
        let (Some(Value::Import(func)), Some(args), Some(keywords)) =
            (items.first(), items.get(1), items.get(2))
        else {
            return;
        };
        let args: Rc<[Value]> = match args {
            Value::Tuple(args, _) => Rc::clone(args),
            Value::EmptyTuple => Rc::from([]),
            _ => return,
        };
        let keywords = match keywords {
            Value::Dict(dict) => Some(*dict),
            Value::None => None,
            _ => return,
        };
        self.tables.partials.insert(
            id,
            Partial {
                func: *func,
                args,
                keywords,
            },
        );
    }

    /// A new dict: its items are kept while a partial waits for its state.
    pub(super) fn keep_dict_if_partial_open(&mut self, id: u32) {
        if self.tables.open_partials > 0 && self.tables.kept_dicts.len() < MAX_KEPT_DICTS {
            self.tables.kept_dicts.insert(id, Some(Vec::new()));
        }
    }

    /// Items set in dict `id`, kept if the dict is.
    pub(super) fn keep_dict_items(&mut self, id: u32, items: &[Value]) {
        let Some(slot) = self.tables.kept_dicts.get_mut(&id) else {
            return;
        };
        let Some(kept) = slot else {
            return;
        };
        for pair in items.chunks(2) {
            let (Some(name), Some(value)) = (pair.first().and_then(Value::as_name), pair.get(1)) else {
                *slot = None;
                return;
            };
            if kept.len() >= MAX_KEPT_DICT_LEN || self.tables.kept_items >= MAX_KEPT_ITEMS {
                *slot = None;
                return;
            }
            self.tables.kept_items += 1;
            match kept.iter_mut().find(|(key, _)| &**key == name) {
                Some((_, old)) => *old = value.clone(),
                None => kept.push((name.into(), value.clone())),
            }
        }
    }

    /// The partial `callable` is, if the pickle made one that may still be called.
    pub(in crate::analyzer) fn partial_of(&self, callable: &Value) -> Option<Partial> {
        let Value::Obj(id) = callable else {
            return None;
        };
        let obj = self.tables.objects.get(*id as usize)?;
        if obj.flags & Obj::POISONED != 0 {
            return None;
        }
        self.tables.partials.get(id).cloned()
    }

    /// A call of a partial: judged as `func(*partial.args, *args, **partial.keywords)`.
    pub(in crate::analyzer) fn call_partial(
        &mut self,
        offset: u64,
        opcode: Opcode,
        partial: Partial,
        args: CallArgs<'_>,
    ) -> Value {
        let func = partial.func;
        let call_args: Option<&[Value]> = match args {
            CallArgs::Reduce(Value::Tuple(items, _)) => Some(items),
            CallArgs::Reduce(Value::EmptyTuple) => Some(&[]),
            CallArgs::Items(items) => Some(items),
            CallArgs::Reduce(_) | CallArgs::New(_) => None,
        };
        let Some(call_args) = call_args else {
            self.argument_finding(
                offset,
                opcode,
                func,
                "through a functools.partial, with arguments that are not a tuple the scanner can read"
                    .into(),
            );
            return self.poisoned(offset, func);
        };
        let combined: Vec<Value> = partial.args.iter().chain(call_args).cloned().collect();
        if !self.is_refused(func) && !self.is_trusted(func) {
            if let Some(schema) = self.roles_of(func).and_then(|r| r.call.as_deref()) {
                if self
                    .check_keywords(offset, opcode, func, schema, partial.keywords, &combined)
                    .is_err()
                {
                    return self.poisoned(offset, func);
                }
            }
        }
        let tuple = self.make_tuple(offset, combined);
        self.call_op(
            offset,
            opcode,
            &Value::Import(func),
            CallArgs::Reduce(&tuple),
            None,
        )
    }

    /// The partial's keywords, each against the keyword of that name in `func`'s schema.
    fn check_keywords(
        &mut self,
        offset: u64,
        opcode: Opcode,
        func: u32,
        schema: &CallSchema,
        keywords: Option<u32>,
        args: &[Value],
    ) -> Result<(), ()> {
        let Some(dict) = keywords else {
            return Ok(());
        };
        let nonempty = self
            .tables
            .dicts
            .get(dict as usize)
            .is_none_or(|d| d.flags & DictInfo::NONEMPTY != 0);
        if !nonempty {
            return Ok(());
        }
        let Some(Some(entries)) = self.tables.kept_dicts.get(&dict).cloned() else {
            self.argument_finding(
                offset,
                opcode,
                func,
                "through a functools.partial whose keyword arguments the scanner cannot read (a dict made \
                 before the partial, too large, or with keys that are not str constants)"
                    .into(),
            );
            return Err(());
        };
        for (name, value) in &entries {
            let Some((_, spec)) = schema.keywords.iter().find(|(known, _)| known == name) else {
                self.argument_finding(
                    offset,
                    opcode,
                    func,
                    format!("through a functools.partial with the keyword argument {name:?}, which its schema does not name"),
                );
                return Err(());
            };
            if let Err(misfit) = self.match_arg(offset, spec, value, args) {
                let misfit = match misfit {
                    Misfit::Shape(why) => {
                        Misfit::Shape(format!("keyword argument {name:?} is {why}; expected {spec}"))
                    }
                    role => role,
                };
                self.report_misfit(offset, opcode, func, misfit);
                return Err(());
            }
        }
        Ok(())
    }
}

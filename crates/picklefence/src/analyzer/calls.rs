//! Imports, calls and BUILD: where the policy's judgement of a name and its roles is applied.
//! Every import is checked here; every call is recorded here and handed to the role checks.

use super::joblib::CallArgs;
use super::value::Value;
use super::{Analyzer, CallSite, Callee, Detail, Flow, Import, ImportEntry};
use crate::compat::map_python2_import;
use crate::decoder::{Arg, Op};
use crate::findings::{FindingKind, ImportName, Severity};
use crate::opcodes::Opcode;
use crate::policy::danger_reason;

impl Analyzer<'_> {
    /// EXT1, EXT2, EXT4: an import through the copyreg extension registry.
    pub(super) fn load_ext(&mut self, op: &Op<'_>) -> Flow {
        let code = op.arg.as_index().unwrap_or(0);
        let value = self.ext_import(op.offset, op.opcode, code);
        self.push(value);
        Flow::Continue
    }

    /// GLOBAL imports `module.name`; INST imports it, then calls it with the items above the mark.
    pub(super) fn load_global(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let value = match &op.arg {
            Arg::Pair(module, name) => match (std::str::from_utf8(module), std::str::from_utf8(name)) {
                (Ok(module), Ok(name)) => self.import(offset, opcode, module, name),
                _ => self.unresolvable(offset, opcode, "the module or name is not valid UTF-8".into()),
            },
            _ => Value::Unknown,
        };
        if opcode == Opcode::Inst {
            let items = self.pop_mark(offset, opcode);
            let result = self.call(offset, opcode, &value, CallArgs::Items(&items), None);
            self.push(result);
        } else {
            self.push(value);
        }
        Flow::Continue
    }

    /// STACK_GLOBAL: the module and name are the two str constants on top.
    pub(super) fn load_stack_global(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let name = self.pop(offset, opcode);
        let module = self.pop(offset, opcode);
        let value = match (module.as_name(), name.as_name()) {
            (Some(module), Some(name)) => self.import(offset, opcode, module, name),
            _ => self.unresolvable(
                offset,
                opcode,
                format!(
                    "its operands are a {} and a {}, not two str constants",
                    module.what(),
                    name.what()
                ),
            ),
        };
        self.push(value);
        Flow::Continue
    }

    /// REDUCE: `callable(*args)`.
    pub(super) fn load_reduce(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let args = self.pop(offset, opcode);
        let callable = self.pop(offset, opcode);
        let result = self.call(offset, opcode, &callable, CallArgs::Reduce(&args), None);
        self.push(result);
        Flow::Continue
    }

    /// NEWOBJ: `cls.__new__(cls, *args)`.
    pub(super) fn load_newobj(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let args = self.pop(offset, opcode);
        let class = self.pop(offset, opcode);
        let result = self.call(offset, opcode, &class, CallArgs::New(&args), None);
        self.push(result);
        Flow::Continue
    }

    /// NEWOBJ_EX: `cls.__new__(cls, *args, **kwargs)`.
    pub(super) fn load_newobj_ex(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let kwargs = self.pop(offset, opcode);
        let args = self.pop(offset, opcode);
        let class = self.pop(offset, opcode);
        let result = self.call(offset, opcode, &class, CallArgs::New(&args), Some(&kwargs));
        self.push(result);
        Flow::Continue
    }

    /// OBJ: the class and its arguments are the items above the mark.
    pub(super) fn load_obj(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let items = self.pop_mark(offset, opcode);
        let class = match items.first() {
            Some(class) => class.clone(),
            None => {
                self.break_stream(offset, "OBJ has no class after its MARK");
                Value::Unknown
            }
        };
        let args = items.get(1..).unwrap_or_default();
        let result = self.call(offset, opcode, &class, CallArgs::Items(args), None);
        self.push(result);
        Flow::Continue
    }

    /// BUILD: the state on top is stored, then set on the object below it.
    pub(super) fn load_build(&mut self, op: &Op<'_>) -> Flow {
        let (offset, opcode) = (op.offset, op.opcode);
        let state = self.pop(offset, opcode);
        let target = self.top(offset, opcode);
        self.store(offset, &state, None);
        self.build_op(offset, &target, &state);
        self.track_build(&target, &state);
        Flow::Continue
    }

    pub(super) fn import_name(&self, index: u32) -> Option<ImportName> {
        self.table.get(index as usize).and_then(|e| e.target.clone())
    }

    pub(super) fn record_import(&mut self, import: Import) {
        self.active = true;
        if self.report.imports.len() >= self.limits.max_records {
            self.report.records_dropped += 1;
        } else {
            self.report.imports.push(import);
        }
    }

    pub(super) fn record_call(&mut self, call: CallSite) {
        self.active = true;
        if self.detail == Detail::Verdict {
            return;
        }
        if self.report.calls.len() >= self.limits.max_records {
            self.report.records_dropped += 1;
        } else {
            self.report.calls.push(call);
        }
    }

    /// Checks and records an import of `module.name`, returning the stand-in to push.
    pub(super) fn import(&mut self, offset: u64, opcode: Opcode, module: &str, name: &str) -> Value {
        let (mapped_module, mapped_name) = if self.protocol < 3 {
            map_python2_import(module, name)
        } else {
            (module.into(), name.into())
        };
        let written_as = (mapped_module != module || mapped_name != name).then(|| ImportName {
            module: module.into(),
            name: name.into(),
        });
        let known = self
            .interned
            .get(mapped_module.as_ref())
            .and_then(|names| names.get(mapped_name.as_ref()))
            .copied();
        let index = match known {
            Some(index) => index,
            None => {
                if self.table_full(offset) {
                    return Value::Unknown;
                }
                let index = u32::try_from(self.table.len()).unwrap_or(u32::MAX);
                let target = ImportName {
                    module: mapped_module.as_ref().into(),
                    name: mapped_name.as_ref().into(),
                };
                let roles = self.policy.roles(&target.module, &target.name);
                let allowed = roles.is_some();
                if allowed {
                    self.note_native_state(offset, &target);
                }
                self.interned
                    .entry(target.module.clone())
                    .or_default()
                    .insert(target.name.clone(), index);
                self.table.push(ImportEntry {
                    target: Some(target),
                    ext_code: None,
                    allowed,
                    roles,
                });
                index
            }
        };
        self.keep_tuples = true;
        let (target, allowed) = match self.table.get(index as usize) {
            Some(ImportEntry {
                target: Some(target),
                allowed,
                ..
            }) => (target.clone(), *allowed),
            _ => return Value::Unknown,
        };
        if !allowed {
            let via = match &written_as {
                Some(raw) => format!(" (written as {raw})"),
                None => String::new(),
            };
            match danger_reason(&target.module, &target.name) {
                Some(reason) => self.finding(
                    FindingKind::DangerousImport,
                    Severity::Critical,
                    offset,
                    Some(target.clone()),
                    format!("{} imports {target}{via}, which {reason}", opcode.name()),
                ),
                None => self.finding(
                    FindingKind::DisallowedImport,
                    Severity::High,
                    offset,
                    Some(target.clone()),
                    format!(
                        "{} imports {target}{via}, which the policy does not allow",
                        opcode.name()
                    ),
                ),
            }
        }
        self.joblib_note_import(index, &target);
        self.record_import(Import {
            offset,
            opcode: opcode.name(),
            target: Some(target),
            written_as,
            ext_code: None,
            allowed,
            pickle: self.pickle_index(),
        });
        Value::Import(index)
    }

    /// An allowed class whose state its compiled code trusts: noted once per name and pickle.
    pub(super) fn note_native_state(&mut self, offset: u64, target: &ImportName) {
        if let Some(checked) = crate::policy::native_state::load_time_check(&target.module, &target.name) {
            self.finding(
                FindingKind::NativeState,
                Severity::Info,
                offset,
                Some(target.clone()),
                format!(
                    "{target} keeps state its compiled code trusts ({checked}); the scanner cannot read those \
                     arrays: the guard validates them when it loads the file"
                ),
            );
        }
    }

    pub(super) fn unresolvable(&mut self, offset: u64, opcode: Opcode, why: String) -> Value {
        self.finding(
            FindingKind::UnresolvableImport,
            Severity::Critical,
            offset,
            None,
            format!(
                "{} at offset {offset} imports a name that cannot be resolved statically: {why}",
                opcode.name()
            ),
        );
        self.record_import(Import {
            offset,
            opcode: opcode.name(),
            target: None,
            written_as: None,
            ext_code: None,
            allowed: false,
            pickle: self.pickle_index(),
        });
        Value::Unknown
    }

    /// Whether the import table is at its bound (`max_records` distinct imports); if so,
    /// analysis stops here with a limit finding.
    pub(super) fn table_full(&mut self, offset: u64) -> bool {
        if self.table.len() < self.limits.max_records {
            return false;
        }
        self.limit(
            offset,
            &format!("more than {} distinct imports", self.limits.max_records),
        );
        true
    }

    pub(super) fn ext_import(&mut self, offset: u64, opcode: Opcode, code: i64) -> Value {
        if self.table_full(offset) {
            return Value::Unknown;
        }
        if code <= 0 {
            self.break_stream(offset, "EXT specifies a code <= 0");
        }
        let allowed = u32::try_from(code).is_ok_and(|c| self.policy.is_ext_code_allowed(c));
        if !allowed {
            self.finding(
                FindingKind::ExtensionCode,
                Severity::High,
                offset,
                None,
                format!(
                    "{} at offset {offset} imports extension code {code} from the copyreg registry; the policy names no extension codes it allows",
                    opcode.name()
                ),
            );
        }
        self.record_import(Import {
            offset,
            opcode: opcode.name(),
            target: None,
            written_as: None,
            ext_code: Some(code),
            allowed,
            pickle: self.pickle_index(),
        });
        let index = u32::try_from(self.table.len()).unwrap_or(u32::MAX);
        self.table.push(ImportEntry {
            target: None,
            ext_code: Some(code),
            allowed,
            roles: None,
        });
        self.keep_tuples = true;
        Value::Import(index)
    }

    pub(super) fn callee(&self, value: &Value) -> Callee {
        match value {
            Value::Import(index) => match self.table.get(*index as usize) {
                Some(ImportEntry {
                    target: Some(target), ..
                }) => Callee::Import {
                    target: target.clone(),
                },
                Some(ImportEntry {
                    ext_code: Some(code), ..
                }) => Callee::ExtCode { code: *code },
                _ => Callee::Unresolved,
            },
            Value::Obj(id) => Callee::CallResult {
                offset: self.tables.objects.get(*id as usize).map_or(0, |o| o.offset),
            },
            Value::Unknown => Callee::Unresolved,
            other => Callee::Other { what: other.what() },
        }
    }

    /// Records a call of `callable`, reports calls of what is not an import, then checks the
    /// call against the callee's role and returns its result.
    pub(super) fn call(
        &mut self,
        offset: u64,
        opcode: Opcode,
        callable: &Value,
        args: CallArgs<'_>,
        kwargs: Option<&Value>,
    ) -> Value {
        // A call of a partial the pickle made is the call of the function it wraps.
        let partial = self.partial_of(callable);
        let callee = match &partial {
            Some(partial) => self.callee(&Value::Import(partial.func())),
            None => self.callee(callable),
        };
        match &callee {
            Callee::Import { .. } | Callee::ExtCode { .. } | Callee::Unresolved => {}
            Callee::CallResult { offset: made } => {
                let made = *made;
                self.finding(
                    FindingKind::IndirectCall,
                    Severity::High,
                    offset,
                    None,
                    format!(
                        "{} at offset {offset} calls the result of the call at offset {made}; pickles of data never do this",
                        opcode.name()
                    ),
                );
            }
            Callee::Other { what } => {
                let what = *what;
                if !self.broken {
                    self.finding(
                        FindingKind::IndirectCall,
                        Severity::High,
                        offset,
                        None,
                        format!(
                            "{} at offset {offset} calls a {what}, which is not an imported callable",
                            opcode.name()
                        ),
                    );
                }
            }
        }
        self.record_call(CallSite {
            offset,
            opcode: opcode.name(),
            callee,
            pickle: self.pickle_index(),
        });
        let result = match partial {
            Some(partial) => self.call_partial(offset, opcode, partial, args),
            None => self.call_op(offset, opcode, callable, args, kwargs),
        };
        self.track_call(&result, callable, args);
        result
    }
}

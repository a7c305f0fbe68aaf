//! The role parser: the text after a name in the policy data (`reconstruct(items)`,
//! `value(key=a|b)`, `call(str<=64, int[1..64]) -> fresh`) read into [`Roles`].

use std::sync::Arc;

use super::*;

/// Parses one role as written after a name in the policy data (`reason`: the line's comment).
pub fn parse_role(text: &str, reason: &str) -> Result<Roles, RoleError> {
    let mut p = Parser {
        text,
        rest: text.trim(),
    };
    let word = p.word();
    let roles = match word {
        "reconstruct" => Roles {
            reconstruct: Some(p.reconstruct_opts()?),
            ..Roles::default()
        },
        "value" => Roles {
            value: Some(p.value_opts()?),
            ..Roles::default()
        },
        "trusted" => Roles::trusted(),
        "argument" => Roles {
            argument: true,
            ..Roles::default()
        },
        "call" => {
            p.expect("(")?;
            let args = p.args(")")?;
            let keywords = if p.eat("*") { p.keywords()? } else { Vec::new() };
            p.expect(")")?;
            p.expect("->")?;
            let (result, callable_result) = p.result()?;
            let mut checks = Vec::new();
            if p.eat_word("where") {
                loop {
                    match p.word() {
                        "tensor-view" => checks.push(Check::TensorView),
                        "newargs" => checks.push(Check::NewArgs),
                        "tree-args" => checks.push(Check::TreeArgs),
                        "base-items" => checks.push(Check::BaseItems),
                        "arrow-buffers" => checks.push(Check::ArrowBuffers),
                        "range-len" => {
                            p.expect("(")?;
                            checks.push(Check::RangeLen(p.number()?));
                            p.expect(")")?;
                        }
                        "range-state" => {
                            p.expect("(")?;
                            checks.push(Check::RangeState(p.number()?));
                            p.expect(")")?;
                        }
                        "dtype-size" => {
                            p.expect("(")?;
                            checks.push(Check::DtypeSize(p.number()?));
                            p.expect(")")?;
                        }
                        "own-buffer" => {
                            p.expect("(")?;
                            checks.push(Check::OwnBuffer(p.number()?));
                            p.expect(")")?;
                        }
                        "shape-of" => {
                            p.expect("(")?;
                            checks.push(Check::ShapeOf(p.number()?));
                            p.expect(")")?;
                        }
                        other => return Err(p.error(format!("unknown check {other:?}"))),
                    }
                    if !p.eat(",") {
                        break;
                    }
                }
            }
            if reason.trim().is_empty() {
                return Err(p.error("a call entry needs its reviewed reason as the line's comment".into()));
            }
            Roles {
                call: Some(Arc::new(CallSchema {
                    args,
                    keywords,
                    result,
                    checks,
                    callable_result,
                    reason: reason.trim().to_string(),
                    text: text.trim().to_string(),
                })),
                ..Roles::default()
            }
        }
        "" => return Err(p.error("a role is missing (reconstruct, value, call(...) or trusted)".into())),
        other => return Err(p.error(format!("unknown role {other:?}"))),
    };
    p.end()?;
    Ok(roles)
}

struct Parser<'a> {
    text: &'a str,
    rest: &'a str,
}

impl<'a> Parser<'a> {
    fn error(&self, message: String) -> RoleError {
        RoleError {
            message,
            at: self.rest.chars().take(40).collect(),
            text: self.text.to_string(),
        }
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), RoleError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(format!("expected {token:?}")))
        }
    }

    fn end(&mut self) -> Result<(), RoleError> {
        self.skip_space();
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.error("unexpected text after the role".into()))
        }
    }

    /// A word of letters, digits, `_` and `-`.
    fn word(&mut self) -> &'a str {
        self.skip_space();
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        word
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let saved = self.rest;
        if self.word() == word {
            true
        } else {
            self.rest = saved;
            false
        }
    }

    /// A token up to a delimiter: a name, a number, a dotted path.
    fn atom(&mut self) -> &'a str {
        self.skip_space();
        let end = self
            .rest
            .find(|c: char| matches!(c, ',' | '|' | ')' | '}' | ']' | '(' | '{' | '?') || c.is_whitespace())
            .unwrap_or(self.rest.len());
        let (atom, rest) = self.rest.split_at(end);
        self.rest = rest;
        atom
    }

    fn number<T: std::str::FromStr>(&mut self) -> Result<T, RoleError> {
        self.skip_space();
        let sign = usize::from(self.rest.starts_with('-'));
        let end = self
            .rest
            .get(sign..)
            .and_then(|digits| digits.find(|c: char| !c.is_ascii_digit()))
            .map_or(self.rest.len(), |i| i + sign);
        let (number, rest) = self.rest.split_at(end);
        self.rest = rest;
        number
            .parse()
            .map_err(|_| self.error(format!("expected a number, found {number:?}")))
    }

    fn reconstruct_opts(&mut self) -> Result<Reconstruct, RoleError> {
        let mut role = Reconstruct::default();
        if !self.eat("(") {
            return Ok(role);
        }
        loop {
            match self.word() {
                "state" => {
                    self.expect("=")?;
                    role.state = match self.word() {
                        "dict" => StateShape::Dict,
                        "any" => StateShape::Any,
                        other => return Err(self.error(format!("state is dict or any, not {other:?}"))),
                    };
                }
                "items" => role.items = true,
                "newargs" => role.newargs = true,
                "callable" => role.callable = true,
                other => return Err(self.error(format!("unknown reconstruct option {other:?}"))),
            }
            if !self.eat(",") {
                break;
            }
        }
        self.expect(")")?;
        Ok(role)
    }

    fn value_opts(&mut self) -> Result<ValueRole, RoleError> {
        if !self.eat("(") {
            return Ok(ValueRole::default());
        }
        let mut as_item = false;
        let mut word = self.word();
        if word == "item" {
            as_item = true;
            if !self.eat(",") {
                self.expect(")")?;
                return Ok(ValueRole {
                    only_under: Some(Vec::new()),
                    as_item,
                });
            }
            word = self.word();
        }
        if word != "key" {
            return Err(self.error("expected item or key=".into()));
        }
        self.expect("=")?;
        let mut keys = Vec::new();
        loop {
            let key = self.atom();
            if key.is_empty() {
                return Err(self.error("expected a key".into()));
            }
            keys.push(key.into());
            if !self.eat("|") {
                break;
            }
        }
        self.expect(")")?;
        Ok(ValueRole {
            only_under: Some(keys),
            as_item,
        })
    }

    fn args(&mut self, close: &str) -> Result<Args, RoleError> {
        let mut items: Vec<ArgSpec> = Vec::new();
        let mut rest = false;
        self.skip_space();
        if self.rest.starts_with(close) {
            return Ok(Args { items, rest });
        }
        loop {
            // `*` starts a call's keyword arguments (read by the caller).
            self.skip_space();
            if self.rest.starts_with('*') {
                break;
            }
            if self.eat("...") {
                if items.is_empty() {
                    return Err(self.error("\"...\" repeats the argument before it".into()));
                }
                rest = true;
                break;
            }
            let spec = self.arg_spec()?;
            if !spec.optional && items.last().is_some_and(|a| a.optional) {
                return Err(self.error("only the last arguments may be optional".into()));
            }
            items.push(spec);
            if !self.eat(",") {
                break;
            }
        }
        Ok(Args { items, rest })
    }

    /// `, name=kinds, name=kinds` after a call's `*`: the keyword arguments it may be given.
    fn keywords(&mut self) -> Result<Vec<(Box<str>, ArgSpec)>, RoleError> {
        let mut keywords: Vec<(Box<str>, ArgSpec)> = Vec::new();
        while self.eat(",") {
            self.skip_space();
            let end = self
                .rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(self.rest.len());
            let (name, rest) = self.rest.split_at(end);
            if name.is_empty() {
                return Err(self.error("a keyword name is missing".into()));
            }
            self.rest = rest;
            if keywords.iter().any(|(known, _)| &**known == name) {
                return Err(self.error(format!("keyword {name:?} is named twice")));
            }
            self.expect("=")?;
            keywords.push((name.into(), self.arg_spec()?));
        }
        if keywords.is_empty() {
            return Err(self.error("\"*\" is followed by no keyword argument".into()));
        }
        Ok(keywords)
    }

    fn arg_spec(&mut self) -> Result<ArgSpec, RoleError> {
        let mut kinds = vec![self.kind()?];
        while self.eat("|") {
            kinds.push(self.kind()?);
        }
        let optional = self.eat("?");
        Ok(ArgSpec { kinds, optional })
    }

    fn names_in_braces(&mut self) -> Result<Vec<Name>, RoleError> {
        self.expect("{")?;
        let mut names = Vec::new();
        loop {
            let atom = self.atom();
            let Some((module, name)) = atom.split_once(':') else {
                return Err(self.error(format!("expected module:name, found {atom:?}")));
            };
            if module.is_empty() || name.is_empty() {
                return Err(self.error(format!("expected module:name, found {atom:?}")));
            }
            names.push(Name {
                module: module.into(),
                name: name.into(),
            });
            if !self.eat(",") {
                break;
            }
        }
        self.expect("}")?;
        Ok(names)
    }

    fn bound(&mut self) -> Result<Option<u64>, RoleError> {
        if self.eat("<=") {
            Ok(Some(self.number()?))
        } else {
            Ok(None)
        }
    }

    fn kind(&mut self) -> Result<Kind, RoleError> {
        let word = self.word();
        let kind = match word {
            "str" => {
                if self.eat("{") {
                    let mut one_of: Vec<Box<str>> = Vec::new();
                    loop {
                        one_of.push(self.atom().into());
                        if !self.eat(",") {
                            break;
                        }
                    }
                    self.expect("}")?;
                    let max = one_of.iter().map(|s| s.len()).max().unwrap_or(0);
                    Kind::Str {
                        max,
                        one_of: Some(one_of),
                    }
                } else {
                    let max = self.bound()?.unwrap_or(4096);
                    Kind::Str {
                        max: usize::try_from(max).unwrap_or(usize::MAX),
                        one_of: None,
                    }
                }
            }
            "bytes" => Kind::Bytes {
                max: self.bound()?.unwrap_or(u64::MAX),
            },
            "int" => {
                if self.eat("[") {
                    let min = self.number()?;
                    self.expect("..")?;
                    let max = if self.eat("]") {
                        i64::MAX
                    } else {
                        let max = self.number()?;
                        self.expect("]")?;
                        max
                    };
                    Kind::Int { min, max }
                } else {
                    Kind::Int {
                        min: i64::MIN,
                        max: i64::MAX,
                    }
                }
            }
            "bigint" => Kind::BigInt {
                max: self.bound()?.unwrap_or(8),
            },
            "text" => Kind::Text,
            "fraction" => Kind::FractionStr,
            "ndarray-state" => Kind::NdarrayState,
            "dtype-state" => Kind::DtypeState,
            "bool" => Kind::Bool(None),
            "true" => Kind::Bool(Some(true)),
            "false" => Kind::Bool(Some(false)),
            "float" => Kind::Float,
            "none" => Kind::None,
            "ints" => Kind::Ints {
                max: usize::try_from(self.bound()?.unwrap_or(64)).unwrap_or(usize::MAX),
            },
            "decimal" => Kind::Decimal,
            "list" => Kind::List,
            "dict" => Kind::Dict,
            "empty" => Kind::Empty,
            "empty-odict" => Kind::EmptyOrderedDict,
            "data" => Kind::Data,
            "object" => Kind::Object,
            "state" => Kind::State,
            "pid" => Kind::Pid,
            "class" => Kind::Class(self.names_in_braces()?),
            "reconstructable" => Kind::Reconstructable,
            "callable" => Kind::Callable(self.names_in_braces()?),
            "result" => Kind::Result(self.names_in_braces()?),
            "args-of" => {
                self.expect("(")?;
                let n = self.number()?;
                self.expect(")")?;
                Kind::ArgsOf(n)
            }
            "tuple" => {
                self.expect("(")?;
                let args = self.args(")")?;
                self.expect(")")?;
                Kind::Tuple(Arc::new(args))
            }
            "torchfile" => Kind::TorchFile,
            "" => return Err(self.error("expected an argument kind".into())),
            other => return Err(self.error(format!("unknown argument kind {other:?}"))),
        };
        Ok(kind)
    }

    /// The result and whether it is callable.
    fn result(&mut self) -> Result<(ResultSpec, bool), RoleError> {
        let mut callable = false;
        let result = match self.word() {
            "value" => {
                if self.eat("(") {
                    if self.word() != "callable" {
                        return Err(self.error("value takes only the option callable".into()));
                    }
                    callable = true;
                    self.expect(")")?;
                }
                ResultSpec::Value
            }
            "attribute" => ResultSpec::Attribute,
            "fresh" => {
                let mut state = None;
                let mut items = false;
                if self.eat("(") {
                    loop {
                        match self.word() {
                            "state" => {
                                self.expect("=")?;
                                state = Some(self.arg_spec()?);
                            }
                            "items" => items = true,
                            "callable" => callable = true,
                            other => return Err(self.error(format!("unknown fresh option {other:?}"))),
                        }
                        if !self.eat(",") {
                            break;
                        }
                    }
                    self.expect(")")?;
                }
                ResultSpec::Fresh { state, items }
            }
            "new" => {
                self.expect("(")?;
                let slot = self.number()?;
                let mut state = None;
                if self.eat(",") {
                    if self.word() != "state" {
                        return Err(self.error("expected state=".into()));
                    }
                    self.expect("=")?;
                    state = Some(self.arg_spec()?);
                }
                self.expect(")")?;
                ResultSpec::New { slot, state }
            }
            other => {
                return Err(self.error(format!(
                    "a result is value, fresh, new(N) or attribute, not {other:?}"
                )))
            }
        };
        Ok((result, callable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_role() {
        let r = parse_role("reconstruct", "").unwrap();
        assert_eq!(r.reconstruct, Some(Reconstruct::default()));
        let r = parse_role("reconstruct(state=any, items)", "").unwrap();
        assert_eq!(r.reconstruct.unwrap().state, StateShape::Any);
        let r = parse_role("value(item)", "").unwrap();
        assert_eq!(
            r.value.as_ref().map(ToString::to_string).as_deref(),
            Some("value(item)")
        );
        let r = parse_role("value(item, key=a)", "").unwrap();
        assert_eq!(
            r.value.as_ref().map(ToString::to_string).as_deref(),
            Some("value(item, key=a)")
        );
        let r = parse_role("value(key=_kmeans_single_func|other)", "").unwrap();
        assert_eq!(r.value.unwrap().only_under.unwrap().len(), 2);
        let r = parse_role(
            "call(str<=64, bool|int[0..1], true) -> fresh(state=tuple(int[3..4], str<=4, data, ...))",
            "numpy writes these",
        )
        .unwrap();
        let call = r.call.unwrap();
        assert_eq!(call.args.items.len(), 3);
        assert!(matches!(call.result, ResultSpec::Fresh { state: Some(_), .. }));
        let r = parse_role(
            "call(pid, int[0..], ints<=64, ints<=64, bool, empty-odict, data?) -> value where tensor-view",
            "x",
        )
        .unwrap();
        let call = r.call.unwrap();
        assert_eq!(call.checks, vec![Check::TensorView]);
        assert_eq!(
            call.args.items[1].kinds,
            vec![Kind::Int {
                min: 0,
                max: i64::MAX
            }]
        );
        let r = parse_role(
            "call(class{a.b:C, d:E.f}, args-of(0)?) -> new(0, state=state)",
            "x",
        )
        .unwrap();
        let call = r.call.unwrap();
        assert_eq!(call.args.required(), 1);
        assert!(call.args.accepts_count(2));
        assert!(!call.args.accepts_count(3));
        let r = parse_role("call(data, data?, *, ndim=int[1..2], klass=none) -> value", "x").unwrap();
        let call = r.call.unwrap();
        assert_eq!(call.args.items.len(), 2);
        let names: Vec<&str> = call.keywords.iter().map(|(name, _)| &**name).collect();
        assert_eq!(names, ["ndim", "klass"]);
        assert_eq!(call.keywords[0].1.kinds, vec![Kind::Int { min: 1, max: 2 }]);
        let r = parse_role("call(*, axis=int) -> value", "x").unwrap();
        assert!(r.call.unwrap().args.items.is_empty());
    }

    #[test]
    fn rejects_malformed_roles() {
        for bad in [
            "",
            "construct",
            "call(str",
            "call(str) ->",
            "call(str) -> maybe",
            "call(str?, int) -> value",
            "call(...) -> value",
            "reconstruct(state=tuple)",
            "value(key=)",
            "value(item,)",
            "value(items)",
            "call(str) -> value trailing",
            "call(str, *) -> value",
            "call(str, *, =int) -> value",
            "call(str, *, a=int, a=str) -> value",
            "call(str, *, a) -> value",
            "tuple-less(str) -> value",
        ] {
            assert!(parse_role(bad, "reason").is_err(), "{bad:?}");
        }
        assert!(
            parse_role("call(str) -> value", "").is_err(),
            "a call needs a reason"
        );
    }
}

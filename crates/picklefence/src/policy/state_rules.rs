//! State rules: what an object's state may hold under a given attribute name.
//!
//! A BUILD state becomes the object's attributes. Some attributes steer what the library
//! later does with the object: a scorer calls `getattr(estimator, _response_method)(X)`, a
//! torch module calls every hook in `_forward_hooks`, `model.predict(X)` finds an instance
//! attribute `predict` before the method. The rules are data (`policies/state.txt`); names
//! starting with `__` are refused everywhere by the analyzer itself.

use std::sync::OnceLock;

use foldhash::{HashMap, HashSet};

/// The shipped rules file.
pub const STATE_RULES_FILE: &str = include_str!("../../policies/state.txt");

/// What the value under a key must be.
#[derive(Debug, Clone, PartialEq)]
pub enum StateRule {
    /// A str constant from this set, None, or a list/tuple of such str constants.
    OneOf(Vec<Box<str>>),
    /// None, or an empty dict / list / set / `OrderedDict()` the pickle made.
    Empty,
    /// None only.
    NoneOnly,
    /// Plain data only: no import and no object the pickle made (nothing callable).
    NoCallable,
    /// A str constant naming attributes (`a.b_`), none of them private or special, or None.
    AttributePath,
    /// A number (or a tuple of numbers) of at most this magnitude, None, or a str (a mode such
    /// as `"same"`): sizes the library allocates from when the object is used.
    Bounded(f64),
    /// An int, or a tuple of ints (None counts as 1), whose product is at most this, or None:
    /// an output shape the library allocates when the object is used.
    BoundedProduct(f64),
    /// A non-negative number, or a tuple of them, where the product of (1 + each) is at most
    /// this (a single number counts for two dimensions), or None or a str mode: per-dimension
    /// growth (padding, stride, scale factors) multiplies.
    BoundedGrowth(f64),
    /// None or a regular expression without nested or alternating quantified groups, without
    /// backreferences and with at most two unbounded repeats: no catastrophic backtracking.
    SimpleRegex,
    /// A time zone object, None, or a zone name that names no file (pandas opens
    /// `dateutil/<path>`).
    TzName,
    /// None, or a hook container that is empty or holds only objects of these classes
    /// (`module:Class`), whose calls are known.
    Hooks(Vec<Box<str>>),
    /// None, or a dict whose keys are all on the keyword list (the union of every `keys-in`
    /// rule's names): keyword arguments the library passes to a function it calls.
    KeysIn(Vec<Box<str>>),
}

/// One line of the rules file: an attribute name, its rule and why.
#[derive(Debug, Clone)]
pub struct KeyRule {
    /// The attribute name.
    pub key: Box<str>,
    /// What the value under it must be.
    pub rule: StateRule,
    /// Why the key is watched (the line's comment).
    pub reason: String,
}

/// Rules by attribute name.
#[derive(Debug, Clone, Default)]
pub struct StateRules {
    by_key: HashMap<Box<[u8]>, KeyRule>,
    /// The watched keys: every dict key of every pickle is asked about, and almost all are
    /// answered by one bit.
    filter: KeyFilter,
    /// Every class a `hooks` rule names.
    hook_classes: Vec<Box<str>>,
    /// Every name a `keys-in` rule lists.
    keywords: HashSet<Box<[u8]>>,
    keyword_filter: KeyFilter,
}

/// A 4096-bit filter over (first byte, last byte, length) of a set of keys.
#[derive(Debug, Clone, Default)]
struct KeyFilter(Vec<u64>);

impl KeyFilter {
    fn insert(&mut self, key: &[u8]) {
        if self.0.is_empty() {
            self.0 = vec![0; 64];
        }
        let bit = filter_bit(key);
        if let Some(word) = self.0.get_mut(bit / 64) {
            *word |= 1 << (bit % 64);
        }
    }

    #[inline(always)]
    fn may_have(&self, key: &[u8]) -> bool {
        let bit = filter_bit(key);
        key.len() < 64
            && self
                .0
                .get(bit / 64)
                .is_some_and(|word| word & (1 << (bit % 64)) != 0)
    }
}

/// Why a line of the rules file does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state rules line {line}: {message}")]
pub struct StateRuleError {
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong with the line.
    pub message: String,
}

impl StateRules {
    /// The rules of `policies/state.txt`, parsed once.
    pub fn shipped() -> &'static StateRules {
        static RULES: OnceLock<StateRules> = OnceLock::new();
        RULES.get_or_init(|| {
            // A malformed line is skipped (the tests require every line to parse).
            StateRules::parse(STATE_RULES_FILE).0
        })
    }

    /// Parses a rules file: `KEY RULE [ARG...]  # why` per line: the rules that parsed and an
    /// error for every line that did not.
    pub fn parse(text: &str) -> (StateRules, Vec<StateRuleError>) {
        let mut rules = StateRules::default();
        let mut errors = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let (body, comment) = match raw.split_once('#') {
                Some((body, comment)) => (body.trim(), comment.trim()),
                None => (raw.trim(), ""),
            };
            if body.is_empty() {
                continue;
            }
            let mut words = body.split_whitespace();
            let (Some(key), Some(rule)) = (words.next(), words.next()) else {
                errors.push(StateRuleError {
                    line,
                    message: "expected KEY RULE".into(),
                });
                continue;
            };
            let args: Vec<Box<str>> = words.map(Box::from).collect();
            let rule = match (rule, args.is_empty()) {
                ("one-of", false) => StateRule::OneOf(args),
                ("hooks", _) => {
                    rules.hook_classes.extend(args.iter().cloned());
                    StateRule::Hooks(args)
                }
                ("bounded" | "bounded-product" | "bounded-growth", false) => {
                    match args.first().and_then(|a| a.parse::<f64>().ok()) {
                        Some(max) if args.len() == 1 && rule == "bounded" => StateRule::Bounded(max),
                        Some(max) if args.len() == 1 && rule == "bounded-growth" => {
                            StateRule::BoundedGrowth(max)
                        }
                        Some(max) if args.len() == 1 => StateRule::BoundedProduct(max),
                        _ => {
                            errors.push(StateRuleError {
                                line,
                                message: format!("{rule} takes one number"),
                            });
                            continue;
                        }
                    }
                }
                ("keys-in", false) => {
                    for name in &args {
                        rules.keyword_filter.insert(name.as_bytes());
                        rules.keywords.insert(name.as_bytes().into());
                    }
                    StateRule::KeysIn(args)
                }
                ("tz-name", true) => StateRule::TzName,
                ("empty", true) => StateRule::Empty,
                ("none", true) => StateRule::NoneOnly,
                ("no-callable", true) => StateRule::NoCallable,
                ("attribute-path", true) => StateRule::AttributePath,
                ("simple-regex", true) => StateRule::SimpleRegex,
                _ => {
                    errors.push(StateRuleError {
                        line,
                        message: format!(
                            "unknown rule {rule:?} (one-of A B..., empty, none, no-callable, attribute-path, \
                             simple-regex, bounded N, bounded-product N, bounded-growth N, tz-name, \
                             hooks CLASS..., keys-in NAME...)"
                        ),
                    });
                    continue;
                }
            };
            if comment.is_empty() {
                errors.push(StateRuleError {
                    line,
                    message: format!("the rule for {key:?} needs its reason as the line's comment"),
                });
                continue;
            }
            if key.len() >= 64 {
                errors.push(StateRuleError {
                    line,
                    message: format!("the key {key:?} is longer than 63 bytes"),
                });
                continue;
            }
            rules.filter.insert(key.as_bytes());
            rules.by_key.insert(
                key.as_bytes().into(),
                KeyRule {
                    key: key.into(),
                    rule,
                    reason: comment.to_string(),
                },
            );
        }
        (rules, errors)
    }

    /// The rule for an attribute name. Asked for every dict key of every pickle: the filter
    /// answers almost all of them inline, the table the rest.
    #[inline(always)]
    pub fn get(&self, key: &[u8]) -> Option<&KeyRule> {
        if !self.may_have(key) {
            return None;
        }
        self.lookup(key)
    }

    #[inline(never)]
    fn lookup(&self, key: &[u8]) -> Option<&KeyRule> {
        self.by_key.get(key)
    }

    #[inline]
    fn may_have(&self, key: &[u8]) -> bool {
        self.filter.may_have(key)
    }

    /// Whether a dict key is on the keyword list of the `keys-in` rules.
    #[inline(always)]
    pub fn is_keyword(&self, key: &[u8]) -> bool {
        self.keyword_filter.may_have(key) && self.keywords.contains(key)
    }

    /// Whether `module:name` is a class some `hooks` rule accepts in a hook container.
    pub fn is_hook_class(&self, module: &str, name: &str) -> bool {
        self.hook_classes
            .iter()
            .any(|c| c.split_once(':').is_some_and(|(m, n)| m == module && n == name))
    }

    /// Every rule, sorted by key.
    pub fn entries(&self) -> Vec<(&str, &KeyRule)> {
        let mut entries: Vec<(&str, &KeyRule)> = self.by_key.values().map(|r| (&*r.key, r)).collect();
        entries.sort_by_key(|(k, _)| *k);
        entries
    }
}

/// The filter bit of a key: its first and last bytes and its length.
#[inline]
fn filter_bit(key: &[u8]) -> usize {
    let first = usize::from(key.first().copied().unwrap_or(0));
    let last = usize::from(key.last().copied().unwrap_or(0));
    (first.wrapping_mul(31) ^ last.wrapping_mul(131) ^ key.len().wrapping_mul(2053)) & 4095
}

/// A dict key that the analyzer refuses in any state: special names (`__setstate__`,
/// `__reduce_ex__`, `__deepcopy__`...) are looked up on the instance by pickle and copy.
#[inline]
pub fn is_special_key(key: &[u8]) -> bool {
    key.starts_with(b"__")
}

impl std::fmt::Display for StateRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateRule::OneOf(set) => write!(f, "one of {}", set.join(", ")),
            StateRule::Empty => write!(f, "empty"),
            StateRule::NoneOnly => write!(f, "None"),
            StateRule::NoCallable => write!(f, "plain data (nothing callable)"),
            StateRule::AttributePath => write!(f, "a public attribute path"),
            StateRule::Bounded(max) => write!(f, "a number of at most {max}"),
            StateRule::BoundedProduct(max) => write!(f, "a shape of at most {max} elements"),
            StateRule::BoundedGrowth(max) => {
                write!(
                    f,
                    "per-dimension sizes whose product of (1 + size) is at most {max}"
                )
            }
            StateRule::SimpleRegex => {
                write!(f, "a regular expression that cannot backtrack catastrophically")
            }
            StateRule::TzName => write!(f, "a time zone object or a zone name that names no file"),
            StateRule::Hooks(classes) => write!(f, "empty, or holding only {}", classes.join(", ")),
            StateRule::KeysIn(names) => write!(f, "None or keyword arguments among {}", names.join(", ")),
        }
    }
}

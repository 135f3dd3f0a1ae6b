//! Running rules over one request: targets → values, transformations, the operator, captures,
//! chains and `setvar`, with the transaction collection (`TX`) they share.
//!
//! Per-signature semantics (Cloud Armor, spec/armor.md §4.2): a rule either matches or not; the
//! CRS's anomaly scoring and blocking rules play no part. A chain matches when every link does;
//! each link's `setvar`s run as soon as that link matches.

use std::borrow::Cow;
use std::sync::Arc;

use crate::expand::Lookup;
use crate::operator::Outcome;
use crate::request::{Collections, Entry, WafRequest};
use crate::rule::{Rule, SetOp, Target, Var};
use crate::transform::Transform;

/// The state of one request being inspected.
#[derive(Debug)]
pub struct Transaction<'r> {
    data: Data<'r>,
    state: State,
}

/// What the request says: read-only once parsed.
#[derive(Debug)]
struct Data<'r> {
    request: &'r WafRequest,
    collections: Collections,
    /// Where each variable's values start in the dense numbering of the request's values.
    offsets: [usize; VAR_SLOTS],
}

/// More than the number of [`Var`] variants: a request value's slot is `offsets[var] + index`.
const VAR_SLOTS: usize = 32;

/// How many values variable number `tag` has in this request (0 for those not read from it).
fn slot_count(c: &Collections, tag: usize) -> usize {
    let is = |v: Var| v as usize == tag;
    if is(Var::ArgsGet) || is(Var::ArgsGetNames) {
        c.args_get.len()
    } else if is(Var::ArgsPost) || is(Var::ArgsPostNames) {
        c.args_post.len()
    } else if is(Var::RequestCookies) || is(Var::RequestCookiesNames) {
        c.cookies.len()
    } else if is(Var::RequestHeaders) || is(Var::RequestHeadersNames) {
        c.headers.len()
    } else if [
        Var::RequestFilename,
        Var::RequestBasename,
        Var::RequestUri,
        Var::RequestUriRaw,
        Var::RequestLine,
        Var::RequestMethod,
        Var::RequestProtocol,
        Var::QueryString,
        Var::RequestBody,
        Var::ReqbodyProcessor,
        Var::UniqueId,
        Var::Duration,
    ]
    .into_iter()
    .any(is)
    {
        1
    } else {
        0
    }
}

/// What rules change while they run.
#[derive(Debug, Default)]
struct State {
    /// `TX`: keys compared ASCII case-insensitively, insertion order kept.
    tx: Vec<TxVar>,
    matched_var: Option<(String, Vec<u8>)>,
    matched_vars: Vec<(String, Vec<u8>)>,
    /// Operator failures (backtracking budget) while inspecting this request.
    errors: u32,
    /// Per-request cache of transformed values, indexed by value slot × chain id.
    cache: Vec<Option<Vec<u8>>>,
    /// Per-request cache of prefilter set matches, indexed by value slot × set group.
    set_cache: Vec<Option<regex::bytes::SetMatches>>,
    /// Per-request union of a prefilter group's matches over every value its rules read,
    /// indexed by group: which members can match anywhere in this request.
    group_hits: Vec<Option<Vec<bool>>>,
    n_chains: usize,
    n_groups: usize,
}

/// One `TX` variable. Shared pointers: every set of every request starts from the same 901
/// defaults, and copying them must not allocate.
pub type TxVar = (Arc<str>, Arc<[u8]>);

/// Both halves, for macro expansion.
struct View<'a, 'r> {
    data: &'a Data<'r>,
    state: &'a State,
}

/// Which field a value came from, for exclusions and the transformation cache.
#[derive(Debug, Clone)]
struct Value<'a> {
    /// The variable's name (`ARGS`); with `key`, the value's name is `ARGS:key`.
    prefix: &'static str,
    key: Option<Cow<'a, str>>,
    bytes: Cow<'a, [u8]>,
    /// The value's slot in the request's dense numbering (cacheable); `None` for TX and
    /// matched-variable values, which change during the request.
    identity: Option<usize>,
}

impl Value<'_> {
    /// `ARGS:name`, as `MATCHED_VAR_NAME` says it; built only for values that matched.
    fn name(&self) -> String {
        match &self.key {
            Some(k) => format!("{}:{k}", self.prefix),
            None => self.prefix.to_owned(),
        }
    }
}

impl<'r> Transaction<'r> {
    /// `n_chains` and `n_groups`: how many transformation chains and prefilter sets the rules
    /// number (their ids index the per-request caches).
    pub fn new(request: &'r WafRequest, tx_defaults: &[TxVar], n_chains: usize, n_groups: usize) -> Transaction<'r> {
        let collections = Collections::parse(request);
        let mut offsets = [0usize; VAR_SLOTS];
        let mut n_slots = 0;
        for (tag, offset) in offsets.iter_mut().enumerate() {
            *offset = n_slots;
            n_slots += slot_count(&collections, tag);
        }
        Transaction {
            data: Data { request, collections, offsets },
            state: State {
                tx: tx_defaults.to_vec(),
                cache: std::iter::repeat_with(|| None).take(n_slots * n_chains).collect(),
                set_cache: std::iter::repeat_with(|| None).take(n_slots * n_groups).collect(),
                group_hits: std::iter::repeat_with(|| None).take(n_groups).collect(),
                n_chains,
                n_groups,
                ..State::default()
            },
        }
    }

    /// Back to the `TX` a fresh transaction starts with (before evaluating another set); the
    /// parsed request and the transformation cache stay.
    pub fn reset_tx(&mut self, tx_defaults: &[TxVar]) {
        self.state.tx.clear();
        self.state.tx.extend_from_slice(tx_defaults);
        self.state.matched_var = None;
        self.state.matched_vars.clear();
    }

    pub fn collections(&self) -> &Collections {
        &self.data.collections
    }

    /// Operator failures (backtracking budget exhausted) so far.
    pub fn errors(&self) -> u32 {
        self.state.errors
    }

    /// Whether member `member` of `group`'s set matches at least one of the values the group's
    /// rules read. `false` proves that no rule of the group whose first link has this member
    /// can match (see [`Group`]), so it need not visit its values one by one. The union is
    /// computed once per request and group, from the same per-value caches the rules use.
    pub fn may_match(&mut self, group: &Group, member: usize) -> bool {
        let id = group.id as usize;
        if self.state.group_hits.get(id).is_none_or(Option::is_none) {
            let hits = group_union(&self.data, &mut self.state, group);
            if let Some(entry) = self.state.group_hits.get_mut(id) {
                *entry = Some(hits);
            }
        }
        match self.state.group_hits.get(id) {
            Some(Some(hits)) => hits.get(member).copied().unwrap_or(true),
            _ => true,
        }
    }

    /// Evaluates a rule (and its chain). Returns whether it matched; `setvar`s run on a match.
    pub fn evaluate(&mut self, rule: &Rule, exclude: &dyn Fn(Var, &str) -> bool) -> bool {
        self.state.matched_vars.clear();
        let mut link = Some(rule);
        while let Some(r) = link {
            if !evaluate_link(&self.data, &mut self.state, r, exclude) {
                return false;
            }
            // As ModSecurity: a link's `setvar`s run when that link matches, before the next
            // link reads them (931130 sets `tx.rfi_parameter_*` for its second link).
            self.state.run_setvars(&self.data, r);
            link = r.chain.as_deref();
        }
        true
    }
}

/// A prefilter group seen from the rules that can be skipped with it: rules whose first link
/// scans request values (no counts, no `TX` or matched variables), not negated, not
/// `multiMatch`, with this group's transformation chain. Such a rule matches only if its member
/// of the set matches one of its (transformed) values, and its values are a subset of
/// `targets` (exclusions only remove values), so a member that matches none of `targets`'
/// values rules the rule out.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: u32,
    pub set: Arc<regex::bytes::RegexSet>,
    /// The transformation chain's id (the transformed-value cache's index) and the chain.
    pub chain: u32,
    pub transforms: Vec<Transform>,
    /// Every target of those rules, their `!VAR:key` exclusions dropped (a superset).
    pub targets: Vec<Target>,
}

/// Which members of `group`'s set match some value of its targets. Fails open (every member
/// `true`) for a value the caches cannot hold: the group then skips nothing.
fn group_union(data: &Data<'_>, state: &mut State, group: &Group) -> Vec<bool> {
    let len = group.set.len();
    let mut hits = vec![false; len];
    let mut all = false;
    let none = |_: Var, _: &str| false;
    for target in &group.targets {
        data.visit(None, target, &none, &mut |value| {
            if all {
                return;
            }
            let Some(slot) = value.identity else {
                all = true;
                return;
            };
            let set_key = slot * state.n_groups + group.id as usize;
            let matches = if group.transforms.is_empty() {
                cached_set(&mut state.set_cache, set_key, &group.set, &value.bytes)
            } else {
                let key = state.chain_key(slot, group.chain);
                let Some(key) = fill(&mut state.cache, key, &group.transforms, &value.bytes) else {
                    all = true;
                    return;
                };
                cached_set(&mut state.set_cache, set_key, &group.set, cached(&state.cache, key))
            };
            match matches {
                Some(m) => {
                    for member in m.iter() {
                        if let Some(h) = hits.get_mut(member) {
                            *h = true;
                        }
                    }
                }
                None => all = true,
            }
        });
        if all {
            break;
        }
    }
    if all { vec![true; len] } else { hits }
}

/// The set's matches on `input`, from (or into) the per-request cache; `None` out of range.
fn cached_set<'c>(
    cache: &'c mut [Option<regex::bytes::SetMatches>],
    key: usize,
    set: &regex::bytes::RegexSet,
    input: &[u8],
) -> Option<&'c regex::bytes::SetMatches> {
    Some(cache.get_mut(key)?.get_or_insert_with(|| set.matches(input)))
}

fn evaluate_link(data: &Data<'_>, state: &mut State, rule: &Rule, exclude: &dyn Fn(Var, &str) -> bool) -> bool {
    let mut matched = false;
    let mut new_matches = Vec::new();
    for target in &rule.targets {
        if target.count || reads_state(target.var) {
            // Counts need every value first; TX and matched variables change as rules run, so
            // they are read (copied) before any is checked.
            for value in data.values(state, std::slice::from_ref(target), exclude) {
                check_value(data, state, rule, value, &mut matched, &mut new_matches);
            }
        } else {
            // Request values: checked as they are read, without collecting them.
            data.visit(None, target, exclude, &mut |value| {
                check_value(data, state, rule, value, &mut matched, &mut new_matches);
            });
        }
    }
    if matched {
        state.matched_var = new_matches.last().cloned();
        state.matched_vars = new_matches;
    }
    matched
}

/// Variables whose values the running rules change.
pub(crate) fn reads_state(var: Var) -> bool {
    matches!(var, Var::Tx | Var::MatchedVar | Var::MatchedVarName | Var::MatchedVars | Var::MatchedVarsNames)
}

fn check_value(
    data: &Data<'_>,
    state: &mut State,
    rule: &Rule,
    value: Value<'_>,
    matched: &mut bool,
    new_matches: &mut Vec<(String, Vec<u8>)>,
) {
    let hit = if rule.multi_match {
        let mut hit = state.check(data, rule, &value.bytes);
        let mut current = value.bytes.to_vec();
        for t in &rule.transforms {
            if hit.is_some() {
                break;
            }
            if let Some(next) = t.apply(&current) {
                current = next;
                hit = state.check(data, rule, &current);
            }
        }
        hit
    } else {
        let outcome = state.transform_and_run(data, &value, rule);
        state.resolve(outcome, rule.negated)
    };
    if let Some(captures) = hit {
        *matched = true;
        if rule.capture && !captures.is_empty() {
            state.set_captures(captures);
        }
        new_matches.push((value.name(), value.bytes.into_owned()));
    }
}

impl State {
    /// Runs the operator; `Some(captures)` on a match (negation applied).
    fn check(&mut self, data: &Data<'_>, rule: &Rule, input: &[u8]) -> Option<Vec<Vec<u8>>> {
        let outcome = rule.operator.run(input, rule.capture, &View { data, state: self });
        self.resolve(outcome, rule.negated)
    }

    /// An operator's outcome as a match (`Some(captures)`, negation applied); failures counted.
    fn resolve(&mut self, outcome: Outcome, negated: bool) -> Option<Vec<Vec<u8>>> {
        match (outcome, negated) {
            (Outcome::Yes(c), false) => Some(c),
            (Outcome::No, true) => Some(Vec::new()),
            (Outcome::Error, _) => {
                self.errors += 1;
                None
            }
            _ => None,
        }
    }

    /// Runs the rule's operator on the value through the rule's transformations. Request
    /// values are transformed once per distinct chain (rules share chains:
    /// `t:none,t:urlDecodeUni,...`) and read from the cache in place.
    fn transform_and_run(&mut self, data: &Data<'_>, value: &Value<'_>, rule: &Rule) -> Outcome {
        let run = |input: &[u8], state: &State| rule.operator.run(input, rule.capture, &View { data, state });
        let n_groups = self.n_groups;
        // Whether the family's set, in one scan per value and group, says this rule's pattern
        // can match `input` (out of the cache's range: no answer, the rule scans on its own).
        let may_match = |set_cache: &mut [Option<regex::bytes::SetMatches>], slot: usize, input: &[u8]| {
            rule.prefilter.as_ref().is_none_or(|pf| {
                cached_set(set_cache, slot * n_groups + pf.group as usize, &pf.set, input)
                    .is_none_or(|m| m.matched(pf.member))
            })
        };
        if rule.transforms.is_empty() {
            if let Some(slot) = value.identity
                && !may_match(&mut self.set_cache, slot, &value.bytes)
            {
                return Outcome::No;
            }
            return run(&value.bytes, self);
        }
        let (Some(slot), Some(chain)) = (value.identity, rule.transform_id) else {
            return run(&apply_all(&value.bytes, &rule.transforms), self);
        };
        let key = self.chain_key(slot, chain);
        let Some(key) = fill(&mut self.cache, key, &rule.transforms, &value.bytes) else {
            return run(&apply_all(&value.bytes, &rule.transforms), self);
        };
        if !may_match(&mut self.set_cache, slot, cached(&self.cache, key)) {
            return Outcome::No;
        }
        run(cached(&self.cache, key), self)
    }

    /// The transformed-value cache's index for value `slot` under chain `chain` (`None` for a
    /// chain the cache was not sized for).
    fn chain_key(&self, slot: usize, chain: u32) -> Option<usize> {
        ((chain as usize) < self.n_chains).then(|| slot * self.n_chains + chain as usize)
    }

    fn set_captures(&mut self, captures: Vec<Vec<u8>>) {
        for (i, c) in captures.into_iter().enumerate() {
            self.set_tx(&i.to_string(), c);
        }
    }

    fn set_tx(&mut self, key: &str, value: Vec<u8>) {
        match self.tx.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            Some((_, v)) => *v = value.into(),
            None => self.tx.push((key.into(), value.into())),
        }
    }

    fn tx_value(&self, key: &str) -> Option<&[u8]> {
        self.tx.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| &**v)
    }

    fn run_setvars(&mut self, data: &Data<'_>, rule: &Rule) {
        for sv in &rule.setvars {
            let view = View { data, state: self };
            let key = String::from_utf8_lossy(&sv.name.expand(&view)).into_owned();
            let (value, delta) = match &sv.op {
                SetOp::Delete => (None, None),
                SetOp::Set(v) => (Some(v.expand(&view).into_owned()), None),
                SetOp::Add(n) => (None, Some(parse_i64(&n.expand(&view)))),
                SetOp::Sub(n) => (None, Some(parse_i64(&n.expand(&view)).saturating_neg())),
            };
            match (value, delta) {
                (Some(v), _) => self.set_tx(&key, v),
                (None, Some(d)) => {
                    let current = self.tx_value(&key).map(parse_i64).unwrap_or(0);
                    self.set_tx(&key, current.saturating_add(d).to_string().into_bytes());
                }
                (None, None) => self.tx.retain(|(k, _)| !k.eq_ignore_ascii_case(&key)),
            }
        }
    }
}

impl<'r> Data<'r> {
    /// The values of a rule's targets, in target order, exclusions applied. Request values are
    /// borrowed; `TX` and matched-variable values are copied (they change as rules run).
    fn values<'a>(&'a self, state: &State, targets: &[Target], exclude: &dyn Fn(Var, &str) -> bool) -> Vec<Value<'a>> {
        let mut out = Vec::new();
        for target in targets {
            let before = out.len();
            self.visit(Some(state), target, exclude, &mut |v| out.push(v));
            if target.count {
                let n = out.len() - before;
                out.truncate(before);
                out.push(Value {
                    prefix: target.var.name(),
                    key: None,
                    bytes: Cow::Owned(n.to_string().into_bytes()),
                    identity: None,
                });
            }
        }
        out
    }

    /// Hands each value of one target to `f`, exclusions applied: the rule's own `!VAR:key`,
    /// then the policy's (Cloud Armor field exclusions, passed in by the caller).
    fn visit<'a>(
        &'a self,
        state: Option<&State>,
        target: &Target,
        exclude: &dyn Fn(Var, &str) -> bool,
        f: &mut dyn FnMut(Value<'a>),
    ) {
        self.target_values(state, target, &mut |v: Value<'a>| {
            let key = v.key.as_deref().unwrap_or("");
            if !target.excluded.iter().any(|s| s.matches(key)) && !exclude(target.var, key) {
                f(v);
            }
        });
    }

    /// `state` is needed for `TX` and the matched variables only (`None`: they have no values).
    fn target_values<'a>(&'a self, state: Option<&State>, target: &Target, out: &mut dyn FnMut(Value<'a>)) {
        let c = &self.collections;
        let var = target.var;
        let tag = var as usize;
        let keyed = |entries: &'a [Entry], names: bool, out: &mut dyn FnMut(Value<'a>), tag: usize| {
            for (i, e) in entries.iter().enumerate() {
                if target.selector.as_ref().is_none_or(|s| s.matches(&e.name)) {
                    out(Value {
                        prefix: var.name(),
                        key: Some(Cow::Borrowed(e.name.as_str())),
                        bytes: if names { Cow::Borrowed(e.name.as_bytes()) } else { Cow::Borrowed(&e.value) },
                        identity: Some(self.offsets.get(tag).copied().unwrap_or(usize::MAX).saturating_add(i)),
                    });
                }
            }
        };
        let single = |bytes: Cow<'a, [u8]>, out: &mut dyn FnMut(Value<'a>)| {
            out(Value { prefix: var.name(), key: None, bytes, identity: self.offsets.get(tag).copied() });
        };
        match var {
            Var::Args => {
                keyed(&c.args_get, false, out, Var::ArgsGet as usize);
                keyed(&c.args_post, false, out, Var::ArgsPost as usize);
            }
            Var::ArgsNames => {
                keyed(&c.args_get, true, out, Var::ArgsGetNames as usize);
                keyed(&c.args_post, true, out, Var::ArgsPostNames as usize);
            }
            Var::ArgsGet => keyed(&c.args_get, false, out, tag),
            Var::ArgsGetNames => keyed(&c.args_get, true, out, tag),
            Var::ArgsPost => keyed(&c.args_post, false, out, tag),
            Var::ArgsPostNames => keyed(&c.args_post, true, out, tag),
            Var::RequestCookies => keyed(&c.cookies, false, out, tag),
            Var::RequestCookiesNames => keyed(&c.cookies, true, out, tag),
            Var::RequestHeaders => keyed(&c.headers, false, out, tag),
            Var::RequestHeadersNames => keyed(&c.headers, true, out, tag),
            Var::RequestFilename => single(Cow::Borrowed(&c.request_filename), out),
            Var::RequestBasename => single(Cow::Borrowed(&c.request_basename), out),
            Var::RequestUri | Var::RequestUriRaw => single(Cow::Borrowed(self.request.uri.as_bytes()), out),
            Var::RequestLine => single(Cow::Borrowed(&c.request_line), out),
            Var::RequestMethod => single(Cow::Borrowed(self.request.method.as_bytes()), out),
            Var::RequestProtocol => single(Cow::Borrowed(self.request.protocol.as_bytes()), out),
            Var::QueryString => single(Cow::Borrowed(&c.query_string), out),
            Var::RequestBody => {
                if !self.request.body.is_empty() {
                    single(Cow::Borrowed(&self.request.body), out);
                }
            }
            Var::ReqbodyProcessor => single(Cow::Borrowed(c.reqbody_processor.as_bytes()), out),
            // Not parsed (see request.rs): no values.
            Var::Xml | Var::Files | Var::FilesNames => {}
            Var::UniqueId | Var::Duration => single(Cow::Borrowed(b"0"), out),
            Var::MatchedVar => {
                if let Some((_, value)) = state.and_then(|s| s.matched_var.as_ref()) {
                    out(Value { prefix: var.name(), key: None, bytes: Cow::Owned(value.clone()), identity: None });
                }
            }
            Var::MatchedVarName => {
                if let Some((name, _)) = state.and_then(|s| s.matched_var.as_ref()) {
                    out(Value {
                        prefix: var.name(),
                        key: None,
                        bytes: Cow::Owned(name.clone().into_bytes()),
                        identity: None,
                    });
                }
            }
            Var::MatchedVars | Var::MatchedVarsNames => {
                for (name, value) in state.iter().flat_map(|s| s.matched_vars.iter()) {
                    let bytes = if var == Var::MatchedVars { value.clone() } else { name.clone().into_bytes() };
                    out(Value {
                        prefix: var.name(),
                        key: Some(Cow::Owned(name.clone())),
                        bytes: Cow::Owned(bytes),
                        identity: None,
                    });
                }
            }
            Var::Tx => {
                for (k, v) in state.iter().flat_map(|s| s.tx.iter()) {
                    if target.selector.as_ref().is_none_or(|s| s.matches(k)) {
                        out(Value {
                            prefix: "TX",
                            key: Some(Cow::Owned(k.to_string())),
                            bytes: Cow::Owned(v.to_vec()),
                            identity: None,
                        });
                    }
                }
            }
        }
    }
}

impl Lookup for View<'_, '_> {
    fn lookup(&self, collection: &str, key: Option<&str>) -> Option<Cow<'_, [u8]>> {
        let state = self.state;
        match (collection, key) {
            ("TX", Some(k)) => state.tx_value(k).map(Cow::Borrowed),
            ("MATCHED_VAR", None) => state.matched_var.as_ref().map(|(_, v)| Cow::Borrowed(v.as_slice())),
            ("MATCHED_VAR_NAME", None) => state.matched_var.as_ref().map(|(n, _)| Cow::Borrowed(n.as_bytes())),
            ("REQUEST_HEADERS", Some(k)) => self
                .data
                .collections
                .headers
                .iter()
                .find(|e| e.name.eq_ignore_ascii_case(k))
                .map(|e| Cow::Borrowed(e.value.as_slice())),
            ("REQUEST_METHOD", None) => Some(Cow::Borrowed(self.data.request.method.as_bytes())),
            _ => None,
        }
    }
}

/// Fills the per-request cache entry `key` with the value transformed by `transforms` unless it
/// is there already, and returns the key (`None` when there is no such entry: the caller
/// transforms the value uncached). Read the value with [`cached`].
fn fill(cache: &mut [Option<Vec<u8>>], key: Option<usize>, transforms: &[Transform], bytes: &[u8]) -> Option<usize> {
    let key = key?;
    cache.get_mut(key)?.get_or_insert_with(|| apply_all(bytes, transforms));
    Some(key)
}

/// A filled entry of the transformed-value cache.
fn cached(cache: &[Option<Vec<u8>>], key: usize) -> &[u8] {
    cache.get(key).and_then(Option::as_deref).unwrap_or_default()
}

fn apply_all(input: &[u8], transforms: &[Transform]) -> Vec<u8> {
    let mut current = input.to_vec();
    for t in transforms {
        if let Some(next) = t.apply(&current) {
            current = next;
        }
    }
    current
}

fn parse_i64(bytes: &[u8]) -> i64 {
    std::str::from_utf8(bytes).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

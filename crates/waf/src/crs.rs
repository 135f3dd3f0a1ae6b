//! The OWASP CRS rule files behind Cloud Armor's preconfigured sets, loaded from disk (Debian's
//! `modsecurity-crs` by default; moat never vendors them), and evaluated per set.
//!
//! How the CRS files become Cloud Armor sets:
//! - one set per request-attack file (`sqli` = REQUEST-942, ...; spec/armor.md §4.1);
//! - a signature's sensitivity is the paranoia level of the section it sits in: the CRS gates
//!   each section with `SecRule TX:EXECUTING_PARANOIA_LEVEL "@lt N" ...skipAfter:END-...`. The
//!   gates themselves are dropped; which signatures run is decided per call from the sensitivity
//!   and the opt-in/opt-out lists;
//! - `nolog` rules (counters such as 921170) are helpers, not signatures: they run whenever their
//!   file is evaluated, and never match on their own;
//! - `TX` starts from the defaults REQUEST-901-INITIALIZATION sets (`tx.allowed_methods`, ...),
//!   read from that file.

use std::path::{Path, PathBuf};

use crate::engine::Transaction;
use crate::request::WafRequest;
use crate::rule::{self, Rule, Selector, Var};
use crate::seclang::{Directive, parse_actions, parse_file};

/// The default CRS location: Debian's `modsecurity-crs` package.
pub const DEFAULT_CRS_DIR: &str = "/usr/share/modsecurity-crs";

/// The Cloud Armor families and the CRS file each is made of.
pub const FAMILIES: &[(&str, &str)] = &[
    ("methodenforcement", "REQUEST-911-"),
    ("scannerdetection", "REQUEST-913-"),
    ("protocolattack", "REQUEST-921-"),
    ("lfi", "REQUEST-930-"),
    ("rfi", "REQUEST-931-"),
    ("rce", "REQUEST-932-"),
    ("php", "REQUEST-933-"),
    ("nodejs", "REQUEST-934-"),
    ("xss", "REQUEST-941-"),
    ("sqli", "REQUEST-942-"),
    ("sessionfixation", "REQUEST-943-"),
    ("java", "REQUEST-944-"),
];

/// Why the CRS could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// A loaded rule set: every family's rules, compiled.
#[derive(Debug)]
pub struct Crs {
    pub dir: PathBuf,
    /// The CRS version the files say (`3.3.4`).
    pub version: String,
    families: Vec<Family>,
    tx_defaults: Vec<crate::engine::TxVar>,
    /// Distinct transformation chains and prefilter sets (their ids index per-request caches).
    n_chains: usize,
    n_groups: usize,
}

/// One family (one CRS file).
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub file: PathBuf,
    /// Phase 1 rules, then phase 2, each in file order.
    rules: Vec<CrsRule>,
    /// The family's prefilter groups, for skipping rules whose pattern matches no value.
    groups: Vec<crate::engine::Group>,
}

#[derive(Debug)]
struct CrsRule {
    rule: Rule,
    paranoia: u8,
    signature: bool,
    /// `(index in Family::groups, member)` when the rule can be ruled out by its group's union
    /// of matches (see [`crate::engine::Group`]).
    skip: Option<(usize, usize)>,
}

/// A signature of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    pub id: u32,
    pub paranoia: u8,
}

impl Family {
    pub fn signatures(&self) -> impl Iterator<Item = Signature> + '_ {
        self.rules
            .iter()
            .filter(|r| r.signature)
            .filter_map(|r| Some(Signature { id: r.rule.id?, paranoia: r.paranoia }))
    }

    /// How many rules (chain links included) have a prefilter set, of how many `@rx` rules.
    pub fn prefiltered(&self) -> (usize, usize) {
        let (mut with, mut rx) = (0, 0);
        for r in &self.rules {
            let mut link = Some(&r.rule);
            while let Some(rule) = link {
                if matches!(rule.operator, crate::operator::Operator::Rx(_)) {
                    rx += 1;
                    with += usize::from(rule.prefilter.is_some());
                }
                link = rule.chain.as_deref();
            }
        }
        (with, rx)
    }

    /// Rules that use the backtracking regex engine (for docs and tuning).
    /// The rules that need the backtracking engine, each with whether a linear relaxation
    /// screens its values first.
    pub fn backtracking_rules(&self) -> Vec<(u32, bool)> {
        self.rules
            .iter()
            .filter_map(|r| match &r.rule.operator {
                crate::operator::Operator::Rx(p) if p.is_backtracking() => Some((r.rule.id?, p.is_relaxed())),
                _ => None,
            })
            .collect()
    }
}

impl Crs {
    /// Loads the CRS from `dir` (the package root holding `rules/`, or the rules directory
    /// itself). Every rule of every family must compile; the first that does not is the error.
    pub fn load(dir: &Path) -> Result<Crs, LoadError> {
        let rules_dir = if dir.join("rules").is_dir() { dir.join("rules") } else { dir.to_path_buf() };
        let entries = std::fs::read_dir(&rules_dir).map_err(|e| {
            LoadError(format!(
                "no OWASP CRS rule files at {} ({e}); install Debian's modsecurity-crs \
                 (`apt-get install modsecurity-crs`) or point --crs-dir at a CRS 3.3 checkout",
                rules_dir.display()
            ))
        })?;
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        let find = |prefix: &str| {
            files.iter().find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".conf"))
            })
        };
        let mut families = Vec::new();
        let mut version = String::new();
        for (name, prefix) in FAMILIES {
            let file = find(prefix).ok_or_else(|| {
                LoadError(format!(
                    "{}: no {prefix}*.conf (the `{name}` set); is this an OWASP CRS 3.3 rules directory? \
                     Install Debian's modsecurity-crs or pass --crs-dir",
                    rules_dir.display()
                ))
            })?;
            let (family, v) = load_family(name, file, &rules_dir)?;
            if version.is_empty() {
                version = v;
            }
            families.push(family);
        }
        // One id per distinct transformation chain, across every family: the sets of one
        // request share the transformed values.
        let mut chains: Vec<Vec<crate::transform::Transform>> = Vec::new();
        for family in &mut families {
            for r in &mut family.rules {
                let mut link = Some(&mut r.rule);
                while let Some(rule) = link {
                    let id = match chains.iter().position(|c| *c == rule.transforms) {
                        Some(i) => i,
                        None => {
                            chains.push(rule.transforms.clone());
                            chains.len() - 1
                        }
                    };
                    rule.transform_id = u32::try_from(id).ok();
                    link = rule.chain.as_deref_mut();
                }
            }
        }
        let mut group = 0u32;
        for family in &mut families {
            build_prefilters(family, &mut group);
        }
        let tx_defaults = match find("REQUEST-901-") {
            Some(init) => tx_defaults(init)?,
            None => Vec::new(),
        };
        Ok(Crs { dir: rules_dir, version, families, tx_defaults, n_chains: chains.len(), n_groups: group as usize })
    }

    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// Starts inspecting one request. Several sets can be evaluated on the same inspection;
    /// they share the parsed request and transformed values, not `TX`.
    pub fn inspect<'r>(&'r self, request: &'r WafRequest) -> Inspection<'r> {
        Inspection {
            crs: self,
            tx: Transaction::new(request, &self.tx_defaults, self.n_chains, self.n_groups),
            shortcuts: true,
        }
    }

    /// As [`Crs::inspect`], but every rule visits every one of its values: no rule is ruled out
    /// by its group's union of prefilter matches. Same results, slower; for tests that check
    /// exactly that, and for debugging.
    pub fn inspect_exhaustive<'r>(&'r self, request: &'r WafRequest) -> Inspection<'r> {
        Inspection { shortcuts: false, ..self.inspect(request) }
    }
}

/// One request under inspection.
#[derive(Debug)]
pub struct Inspection<'r> {
    crs: &'r Crs,
    tx: Transaction<'r>,
    /// Rule out rules by their group's union (see [`crate::engine::Group`]).
    shortcuts: bool,
}

impl Inspection<'_> {
    /// Evaluates one family: the signatures `enabled(id, paranoia)` accepts, and every helper
    /// rule. `exclude(id, variable, key)` removes a field from one signature's inspection.
    /// Returns the ids of the signatures that matched, in evaluation order.
    pub fn evaluate(
        &mut self,
        family: &str,
        enabled: &dyn Fn(u32, u8) -> bool,
        exclude: &dyn Fn(u32, Var, &str) -> bool,
    ) -> Vec<u32> {
        let Some(family) = self.crs.family(family) else { return Vec::new() };
        self.tx.reset_tx(&self.crs.tx_defaults);
        let mut matched = Vec::new();
        for r in &family.rules {
            let id = r.rule.id.unwrap_or(0);
            if r.signature && !enabled(id, r.paranoia) {
                continue;
            }
            if self.shortcuts
                && let Some((g, member)) = r.skip
                && let Some(group) = family.groups.get(g)
                && !self.tx.may_match(group, member)
            {
                continue;
            }
            let excluded = |var: Var, key: &str| exclude(id, var, key);
            if self.tx.evaluate(&r.rule, &excluded) && r.signature {
                matched.push(id);
            }
        }
        matched
    }

    /// Operator failures (backtracking budget exhausted) so far.
    pub fn errors(&self) -> u32 {
        self.tx.errors()
    }
}

fn load_family(name: &'static str, file: &Path, data_dir: &Path) -> Result<(Family, String), LoadError> {
    let text = std::fs::read_to_string(file).map_err(|e| LoadError(format!("cannot read {}: {e}", file.display())))?;
    let display = file.display().to_string();
    let directives = parse_file(&display, &text).map_err(|e| LoadError(e.to_string()))?;
    let mut rules: Vec<CrsRule> = Vec::new();
    let mut paranoia = 1u8;
    let mut version = String::new();
    let mut pending: Vec<Rule> = Vec::new();
    for d in &directives {
        match d.name.as_str() {
            "SecRule" | "SecAction" => {
                let (rule, chained) =
                    rule::compile(d, data_dir).map_err(|e| LoadError(format!("{}: {e}", d.location)))?;
                if version.is_empty() {
                    version = ver(d);
                }
                pending.push(rule);
                if chained {
                    continue;
                }
                let Some(rule) = link(std::mem::take(&mut pending)) else { continue };
                if let Some(level) = paranoia_gate(&rule) {
                    paranoia = level;
                    continue;
                }
                if let Some(marker) = &rule.skip_after {
                    return Err(LoadError(format!(
                        "{}: `skipAfter:{marker}` outside a paranoia-level gate is not supported",
                        rule.location
                    )));
                }
                let signature = rule.id.is_some() && !rule.nolog;
                rules.push(CrsRule { rule, paranoia, signature, skip: None });
            }
            "SecMarker" | "SecComponentSignature" => {}
            other => {
                return Err(LoadError(format!("{}: directive `{other}` is not supported in a rule file", d.location)));
            }
        }
    }
    if !pending.is_empty() {
        return Err(LoadError(format!("{display}: the file ends inside a chain")));
    }
    rules.sort_by_key(|r| r.rule.phase);
    Ok((Family { name, file: file.to_path_buf(), rules, groups: Vec::new() }, version))
}

/// Groups the family's linear `@rx` rules (chain links included) by transformation chain and
/// gives each group one `RegexSet` prefilter. A group whose set does not build keeps scanning
/// rule by rule (the set is an optimisation, never a change in what matches).
fn build_prefilters(family: &mut Family, group: &mut u32) {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    let mut by_chain: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let visit = |rule: &Rule, by_chain: &mut BTreeMap<u32, Vec<String>>| {
        if let (Some(chain), crate::operator::Operator::Rx(p)) = (rule.transform_id, &rule.operator)
            && let Some(src) = p.linear_source()
        {
            let list = by_chain.entry(chain).or_default();
            if !list.iter().any(|s| s == src) {
                list.push(src.to_owned());
            }
        }
    };
    for r in &family.rules {
        let mut link = Some(&r.rule);
        while let Some(rule) = link {
            visit(rule, &mut by_chain);
            link = rule.chain.as_deref();
        }
    }
    let mut sets: BTreeMap<u32, (Arc<regex::bytes::RegexSet>, u32, Vec<String>)> = BTreeMap::new();
    for (chain, sources) in by_chain {
        if sources.len() < 2 {
            continue;
        }
        let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
        if let Ok(set) = crate::pattern::Pattern::set(&refs) {
            sets.insert(chain, (Arc::new(set), *group, sources));
            *group += 1;
        }
    }
    for r in &mut family.rules {
        let mut link = Some(&mut r.rule);
        while let Some(rule) = link {
            if let (Some(chain), crate::operator::Operator::Rx(p)) = (rule.transform_id, &rule.operator)
                && let Some(src) = p.linear_source()
                && let Some((set, g, sources)) = sets.get(&chain)
                && let Some(member) = sources.iter().position(|s| s == src)
            {
                rule.prefilter = Some(crate::rule::Prefilter { set: Arc::clone(set), group: *g, member });
            }
            link = rule.chain.as_deref_mut();
        }
    }
    // Rules that their group's union can rule out, and the union's targets.
    let mut groups: Vec<crate::engine::Group> = Vec::new();
    for r in &mut family.rules {
        let rule = &r.rule;
        let (Some(pf), Some(chain)) = (&rule.prefilter, rule.transform_id) else { continue };
        let reads_request = rule.targets.iter().all(|t| !t.count && !crate::engine::reads_state(t.var));
        if rule.negated || rule.multi_match || !reads_request || rule.targets.is_empty() {
            continue;
        }
        let index = match groups.iter().position(|g| g.id == pf.group) {
            Some(i) => i,
            None => {
                groups.push(crate::engine::Group {
                    id: pf.group,
                    set: Arc::clone(&pf.set),
                    chain,
                    transforms: rule.transforms.clone(),
                    targets: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let Some(group) = groups.get_mut(index) else { continue };
        for t in &rule.targets {
            let t = crate::rule::Target { excluded: Vec::new(), ..t.clone() };
            if !group.targets.iter().any(|u| same_target(u, &t)) {
                group.targets.push(t);
            }
        }
        r.skip = Some((index, pf.member));
    }
    // A target that reads the whole variable covers the same variable with a selector.
    for g in &mut groups {
        let whole: Vec<Var> = g.targets.iter().filter(|t| t.selector.is_none()).map(|t| t.var).collect();
        g.targets.retain(|t| t.selector.is_none() || !whole.contains(&t.var));
    }
    family.groups = groups;
}

/// Same variable and same selector (compared by how they print).
fn same_target(a: &crate::rule::Target, b: &crate::rule::Target) -> bool {
    a.var == b.var && format!("{:?}", a.selector) == format!("{:?}", b.selector)
}

/// Folds a chain's links into the first rule.
fn link(mut links: Vec<Rule>) -> Option<Rule> {
    let mut next: Option<Box<Rule>> = None;
    while let Some(mut r) = links.pop() {
        r.chain = next.take();
        next = Some(Box::new(r));
    }
    next.map(|b| *b)
}

/// `SecRule TX:EXECUTING_PARANOIA_LEVEL "@lt N" "...,skipAfter:END-..."` → `Some(N)`.
fn paranoia_gate(rule: &Rule) -> Option<u8> {
    let [target] = rule.targets.as_slice() else { return None };
    let is_level = matches!(&target.selector, Some(Selector::Name(n))
        if n.eq_ignore_ascii_case("EXECUTING_PARANOIA_LEVEL") || n.eq_ignore_ascii_case("DETECTION_PARANOIA_LEVEL"));
    if target.var != Var::Tx || !is_level || rule.skip_after.is_none() || rule.chain.is_some() {
        return None;
    }
    match &rule.operator {
        crate::operator::Operator::Lt(t) => t.literal()?.trim().parse().ok(),
        _ => None,
    }
}

fn ver(d: &Directive) -> String {
    let actions = d.args.last().map(String::as_str).unwrap_or_default();
    parse_actions(actions)
        .ok()
        .and_then(|a| a.into_iter().find(|a| a.name == "ver"))
        .and_then(|a| a.value)
        .map(|v| v.trim_start_matches("OWASP_CRS/").to_owned())
        .unwrap_or_default()
}

/// The `TX` defaults REQUEST-901 sets when crs-setup.conf did not:
/// `SecRule &TX:name "@eq 0" "...,setvar:'tx.name=value'"`.
fn tx_defaults(file: &Path) -> Result<Vec<crate::engine::TxVar>, LoadError> {
    let text = std::fs::read_to_string(file).map_err(|e| LoadError(format!("cannot read {}: {e}", file.display())))?;
    let directives = parse_file(&file.display().to_string(), &text).map_err(|e| LoadError(e.to_string()))?;
    let mut out: Vec<crate::engine::TxVar> = Vec::new();
    for d in directives {
        let [vars, op, actions] = d.args.as_slice() else { continue };
        if d.name != "SecRule" || !vars.starts_with("&TX:") || op != "@eq 0" {
            continue;
        }
        let Ok(actions) = parse_actions(actions) else { continue };
        for a in actions.into_iter().filter(|a| a.name == "setvar") {
            let Some((name, value)) = a.value.as_deref().and_then(|v| v.split_once('=')) else { continue };
            let Some(key) = name.strip_prefix("tx.") else { continue };
            if !value.contains("%{") && !out.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
                out.push((key.into(), value.as_bytes().into()));
            }
        }
    }
    Ok(out)
}

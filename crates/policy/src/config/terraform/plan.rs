//! The `terraform show -json` document, flattened: every resource instance of the plan's
//! `planned_values` (or the state's `values`) with its address, its values, what the plan
//! leaves unknown, and the expressions its configuration block was written with.

use std::collections::BTreeMap;

use serde_json::Value;

/// One resource instance (`module.api.google_cloud_run_v2_service.svc["eu"]`).
#[derive(Debug)]
pub(crate) struct Res<'a> {
    /// The address as Terraform prints it: module prefix and instance key included.
    pub address: String,
    pub kind: &'a str,
    /// The block's name (`svc` in `google_cloud_run_v2_service.svc`).
    pub name: &'a str,
    pub data: bool,
    pub values: &'a Value,
    /// `resource_changes[].change.after_unknown`, when the plan has it.
    pub unknown: Option<&'a Value>,
    /// `module.api["x"].` (with the trailing dot) or empty at the root.
    pub module: String,
    /// The instance key (`0`, `"eu"`), when `count` or `for_each` made several.
    pub index: Option<&'a Value>,
    /// The configuration block's `expressions`, when the plan has a `configuration`.
    pub expressions: Option<&'a Value>,
    /// `config_key()`, computed once.
    key: String,
}

impl Res<'_> {
    /// `module.api.google_x.y`: the configuration block the instance came from.
    fn config_key(&self) -> String {
        format!("{}{}{}.{}", strip_indices(&self.module), if self.data { "data." } else { "" }, self.kind, self.name)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// Whether the plan leaves `path` (object keys and list indices) unknown until apply.
    pub fn is_unknown(&self, path: &[Seg<'_>]) -> bool {
        let Some(mut v) = self.unknown else { return false };
        for seg in path {
            if v == &Value::Bool(true) {
                return true;
            }
            v = match (seg, v) {
                (Seg::Key(k), Value::Object(m)) => match m.get(*k) {
                    Some(x) => x,
                    None => return false,
                },
                (Seg::Index(i), Value::Array(a)) => match a.get(*i) {
                    Some(x) => x,
                    None => return false,
                },
                _ => return false,
            };
        }
        v == &Value::Bool(true)
    }

    /// Whether the configuration writes the attribute at `path` (keys and block indices, as
    /// `references_at` walks them); `None` when the plan carries no configuration for the
    /// resource.
    pub fn configured(&self, path: &[Seg<'_>]) -> Option<bool> {
        let mut v = self.expressions?;
        for seg in path {
            match (step(v, *seg), seg) {
                (Some(x), _) => v = x,
                // An element of a list attribute: the configuration writes the list whole.
                (None, Seg::Index(_)) if v.get("references").is_some() || v.get("constant_value").is_some() => {
                    return Some(true);
                }
                (None, _) => return Some(false),
            }
        }
        Some(true)
    }

    /// The references the configuration wrote for an attribute (`["google_service_account.a.email",
    /// "google_service_account.a"]`), through single nested blocks (`template`, `spec`).
    pub fn references(&self, path: &[&str]) -> Vec<&str> {
        let path: Vec<Seg<'_>> = path.iter().map(|k| Seg::Key(k)).collect();
        self.references_at(&path)
    }

    /// As `references`, with list indices for repeated blocks (`path_matcher[1].path_rule[0]`).
    /// The configuration writes nested blocks as lists of objects in source order, as the plan's
    /// values do for list blocks. A key met on a list goes through it only when the list holds
    /// one block: through several, which block is meant is not known, and guessing the first
    /// joins every block to the first block's target.
    pub fn references_at(&self, path: &[Seg<'_>]) -> Vec<&str> {
        let Some(mut v) = self.expressions else { return Vec::new() };
        for seg in path {
            match step(v, *seg) {
                Some(x) => v = x,
                None => return Vec::new(),
            }
        }
        let mut out = Vec::new();
        collect_references(v, &mut out);
        out
    }

    /// The index, in the configuration's block list at `list`, of the block that writes `key` as
    /// the constant `value`. Blocks of a set (`binding`, `env`) come in the plan's values in an
    /// order of their own, not the configuration's, so their index there says nothing here.
    pub fn config_block(&self, list: &[Seg<'_>], key: &str, value: &str) -> Option<usize> {
        let mut v = self.expressions?;
        for seg in list {
            v = step(v, *seg)?;
        }
        v.as_array()?
            .iter()
            .position(|b| b.pointer(&format!("/{key}/constant_value")).and_then(Value::as_str) == Some(value))
    }
}

/// One step into a configuration's expressions: an index into a block list, a key into an
/// object or into the only block of a list.
fn step<'v>(v: &'v Value, seg: Seg<'_>) -> Option<&'v Value> {
    match (seg, v) {
        (Seg::Index(i), Value::Array(a)) => a.get(i),
        (Seg::Key(k), Value::Array(a)) => match a.as_slice() {
            [one] => one.get(k),
            _ => None,
        },
        (Seg::Key(k), other) => other.get(k),
        (Seg::Index(_), _) => None,
    }
}

fn collect_references<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(refs)) = m.get("references") {
                out.extend(refs.iter().filter_map(Value::as_str));
            } else {
                m.values().for_each(|x| collect_references(x, out));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_references(x, out)),
        _ => {}
    }
}

/// A step into a value: an object key or a list index.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The document, flattened.
#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    pub resources: Vec<Res<'a>>,
    /// `configuration.provider_config.google.expressions`.
    pub provider: Option<&'a Value>,
    /// Instances by configuration block, and managed resources by (type, `name` attribute):
    /// joining resources is a lookup, not a scan, so large plans load in linear time.
    by_key: BTreeMap<String, Vec<usize>>,
    by_name: BTreeMap<(&'a str, &'a str), usize>,
}

impl<'a> Plan<'a> {
    pub fn read(doc: &'a Value) -> Self {
        let mut unknown: BTreeMap<&str, &Value> = BTreeMap::new();
        let mut after: BTreeMap<&str, &Value> = BTreeMap::new();
        for rc in doc.get("resource_changes").and_then(Value::as_array).into_iter().flatten() {
            let (Some(addr), Some(change)) = (rc.get("address").and_then(Value::as_str), rc.get("change")) else {
                continue;
            };
            if let Some(u) = change.get("after_unknown") {
                unknown.insert(addr, u);
            }
            if let Some(a) = change.get("after").filter(|a| a.is_object()) {
                after.insert(addr, a);
            }
        }
        let mut config = BTreeMap::new();
        if let Some(root) = doc.pointer("/configuration/root_module") {
            index_config(root, "", &mut config);
        }
        let mut plan =
            Plan { provider: doc.pointer("/configuration/provider_config/google/expressions"), ..Plan::default() };
        let mut seen = std::collections::BTreeSet::new();
        // Data sources read at plan time live in the prior state; those deferred to apply (and
        // every managed resource) in planned_values. planned_values wins.
        let roots = [doc.pointer("/planned_values/root_module"), doc.pointer("/values/root_module")];
        let prior = doc.pointer("/prior_state/values/root_module");
        for (root, data_only) in roots.into_iter().map(|r| (r, false)).chain([(prior, true)]) {
            let Some(root) = root else { continue };
            walk_module(root, "", &mut |r: &'a Value, module: &str| {
                let Some(address) = r.get("address").and_then(Value::as_str) else { return };
                let data = r.get("mode").and_then(Value::as_str) == Some("data");
                if (data_only && !data) || !seen.insert(address.to_owned()) {
                    return;
                }
                let Some(kind) = r.get("type").and_then(Value::as_str) else { return };
                let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
                let values = after.get(address).copied().or_else(|| r.get("values")).unwrap_or(&Value::Null);
                let mut res = Res {
                    address: address.to_owned(),
                    kind,
                    name,
                    data,
                    values,
                    unknown: unknown.get(address).copied(),
                    module: module.to_owned(),
                    index: r.get("index"),
                    expressions: None,
                    key: String::new(),
                };
                res.key = res.config_key();
                res.expressions = config.get(res.key.as_str()).copied();
                plan.resources.push(res);
            });
        }
        for (i, r) in plan.resources.iter().enumerate() {
            plan.by_key.entry(r.key.clone()).or_default().push(i);
            if let (false, Some(name)) = (r.data, r.values.get("name").and_then(Value::as_str)) {
                plan.by_name.entry((r.kind, name)).or_insert(i);
            }
        }
        plan
    }

    pub fn of_kind<'s>(&'s self, kinds: &'s [&str]) -> impl Iterator<Item = &'s Res<'a>> + 's {
        self.resources.iter().filter(move |r| !r.data && kinds.contains(&r.kind))
    }

    pub fn data_of_kind<'s>(&'s self, kind: &'s str) -> impl Iterator<Item = &'s Res<'a>> + 's {
        self.resources.iter().filter(move |r| r.data && r.kind == kind)
    }

    /// The resource a reference written in `from`'s module names (`google_service_account.a.email`,
    /// `data.google_iam_policy.p.policy_data`, `google_x.y[0].id`), when it is one of `kinds`.
    /// Under `count`/`for_each` the instance with the referrer's own key is preferred, then a
    /// single instance; anything else is ambiguous and resolves to nothing.
    pub fn referenced(&self, from: &Res<'_>, reference: &str, kinds: &[&str]) -> Option<&Res<'a>> {
        let (data, rest) = match reference.strip_prefix("data.") {
            Some(r) => (true, r),
            None => (false, reference),
        };
        let mut parts = rest.splitn(3, '.');
        let kind = parts.next()?;
        let name_part = parts.next()?;
        if !kinds.contains(&kind) {
            return None;
        }
        let (name, key) = match name_part.split_once('[') {
            Some((n, k)) => (n, Some(k.trim_end_matches(']'))),
            None => (name_part, None),
        };
        let module = strip_indices(&from.module);
        let target = format!("{module}{}{kind}.{name}", if data { "data." } else { "" });
        let candidates: Vec<&Res<'a>> =
            self.by_key.get(&target).into_iter().flatten().filter_map(|i| self.resources.get(*i)).collect();
        let key_of = |r: &Res<'_>| r.index.map(|i| i.to_string());
        if let Some(k) = key {
            return candidates.into_iter().find(|r| key_of(r).as_deref() == Some(k));
        }
        if let [one] = candidates.as_slice() {
            return Some(one);
        }
        let own = key_of(from)?;
        candidates.into_iter().find(|r| key_of(r).as_deref() == Some(own.as_str()))
    }

    /// The first resource of `kinds` that `from.attr` references.
    pub fn follow(&self, from: &Res<'_>, attr: &[&str], kinds: &[&str]) -> Option<&Res<'a>> {
        from.references(attr).into_iter().find_map(|r| self.referenced(from, r, kinds))
    }

    /// As `follow`, at a path with list indices.
    pub fn follow_at(&self, from: &Res<'_>, path: &[Seg<'_>], kinds: &[&str]) -> Option<&Res<'a>> {
        from.references_at(path).into_iter().find_map(|r| self.referenced(from, r, kinds))
    }

    /// The resource `from.attr` points at: by reference in the configuration, else by the last
    /// segment of its value (a name, self link or id) matched against the `name` of `kinds`.
    pub fn link(&self, from: &Res<'_>, attr: &[&str], value: Option<&str>, kinds: &[&str]) -> Option<&Res<'a>> {
        let path: Vec<Seg<'_>> = attr.iter().map(|k| Seg::Key(k)).collect();
        self.link_at(from, &path, value, kinds)
    }

    /// As `link`, at a path with list indices.
    pub fn link_at(&self, from: &Res<'_>, path: &[Seg<'_>], value: Option<&str>, kinds: &[&str]) -> Option<&Res<'a>> {
        if let Some(r) = self.follow_at(from, path, kinds) {
            return Some(r);
        }
        let last = last_segment(value?);
        kinds.iter().find_map(|k| self.by_name.get(&(*k, last))).and_then(|i| self.resources.get(*i))
    }
}

/// `projects/p/global/networks/n` → `n`; a bare name stays as it is.
pub(crate) fn last_segment(s: &str) -> &str {
    s.trim_end_matches('/').rsplit('/').next().unwrap_or(s)
}

fn walk_module<'a>(m: &'a Value, module: &str, f: &mut impl FnMut(&'a Value, &str)) {
    for r in m.get("resources").and_then(Value::as_array).into_iter().flatten() {
        f(r, module);
    }
    for c in m.get("child_modules").and_then(Value::as_array).into_iter().flatten() {
        let prefix = c.get("address").and_then(Value::as_str).map(|a| format!("{a}.")).unwrap_or_default();
        walk_module(c, &prefix, f);
    }
}

fn index_config<'a>(m: &'a Value, prefix: &str, out: &mut BTreeMap<String, &'a Value>) {
    for r in m.get("resources").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(addr), Some(e)) = (r.get("address").and_then(Value::as_str), r.get("expressions")) {
            out.insert(format!("{prefix}{addr}"), e);
        }
    }
    for (name, call) in m.get("module_calls").and_then(Value::as_object).into_iter().flatten() {
        if let Some(child) = call.get("module") {
            index_config(child, &format!("{prefix}module.{name}."), out);
        }
    }
}

/// `module.a["x"].module.b[0].` → `module.a.module.b.`: instance keys removed, quoted keys
/// (which may hold dots and brackets) skipped whole.
pub(crate) fn strip_indices(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0u32;
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if depth > 0 {
            match (quoted, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (_, false, '"') => quoted = !quoted,
                (false, _, ']') => depth -= 1,
                _ => {}
            }
            continue;
        }
        if c == '[' {
            depth = 1;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_block_indices_and_refuse_to_guess_among_several_blocks() {
        let expressions = serde_json::json!({
            "default_service": {"references": ["google_compute_backend_service.a.id"]},
            "path_matcher": [{
                "path_rule": [
                    {"service": {"references": ["google_compute_backend_service.a.id"]}},
                    {"service": {"references": ["google_compute_backend_service.b.id"]}},
                ],
            }],
            "custom_audiences": {"references": ["var.audiences"]},
        });
        let res = Res {
            address: "google_compute_url_map.m".to_owned(),
            kind: "google_compute_url_map",
            name: "m",
            data: false,
            values: &Value::Null,
            unknown: None,
            module: String::new(),
            index: None,
            expressions: Some(&expressions),
            key: String::new(),
        };
        let rule =
            |j| [Seg::Key("path_matcher"), Seg::Index(0), Seg::Key("path_rule"), Seg::Index(j), Seg::Key("service")];
        assert_eq!(res.references_at(&rule(1)), ["google_compute_backend_service.b.id"]);
        assert_eq!(res.references_at(&rule(0)), ["google_compute_backend_service.a.id"]);
        assert!(res.references_at(&rule(2)).is_empty());
        // One path matcher: a key goes through it; two path rules: which one is not known.
        assert!(res.references(&["path_matcher", "path_rule", "service"]).is_empty());
        assert_eq!(res.configured(&rule(1)), Some(true));
        assert_eq!(
            res.configured(&[Seg::Key("path_matcher"), Seg::Key("path_rule"), Seg::Key("service")]),
            Some(false)
        );
        assert_eq!(res.configured(&[Seg::Key("custom_audiences"), Seg::Index(0)]), Some(true));
    }

    #[test]
    fn strips_instance_keys_even_with_dots_and_brackets_inside() {
        let cases = [
            ("module.api[\"eu.west]\"].", "module.api."),
            ("module.a[0].module.b[\"x\"].", "module.a.module.b."),
            ("", ""),
        ];
        for (given, want) in cases {
            assert_eq!(strip_indices(given), want, "{given}");
        }
    }
}

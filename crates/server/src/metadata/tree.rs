//! The metadata a workload sees under `/computeMetadata/v1/`, as a tree built once per
//! workload. Directories list their entries (`name/` for directories), answer `recursive=true`
//! with a JSON object keyed in camelCase like GCE, and leave the token and identity endpoints
//! out of that JSON (GCE does too: they are minted on request, not stored).

use serde_json::{Map, Value};

use super::Workload;

#[derive(Debug)]
pub(crate) enum Node {
    Dir(Vec<Entry>),
    Text(String),
    /// A decimal number: text in a listing, a JSON number in JSON.
    Number(String),
    /// One value per line in text, an array in JSON.
    Lines(Vec<String>),
    /// `…/service-accounts/ACCOUNT/token`: an access token minted per request.
    Token,
    /// `…/service-accounts/ACCOUNT/identity`: an ID token minted per request.
    Identity,
}

#[derive(Debug)]
pub(crate) struct Entry {
    /// The path segment (`numeric-project-id`).
    name: String,
    /// The key in recursive JSON (`numericProjectId`).
    key: String,
    node: Node,
}

fn entry(name: &str, node: Node) -> Entry {
    Entry { name: name.to_owned(), key: camel(name), node }
}

/// `numeric-project-id` → `numericProjectId`; email addresses stay as they are.
fn camel(name: &str) -> String {
    if name.contains('@') {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The tree for one workload. Its only account is the workload's own, listed as `default`
/// and by email; nothing else is reachable, which is what makes the identity per workload.
pub(crate) fn build(w: &Workload) -> Node {
    let account = || {
        Node::Dir(vec![
            entry("aliases", Node::Lines(vec!["default".to_owned()])),
            entry("email", Node::Text(w.email().to_owned())),
            entry("identity", Node::Identity),
            entry("scopes", Node::Lines(w.scopes.clone())),
            entry("token", Node::Token),
        ])
    };
    Node::Dir(vec![
        entry(
            "instance",
            Node::Dir(vec![
                entry("id", Node::Text(w.instance_id.clone())),
                entry("region", Node::Text(format!("projects/{}/regions/{}", w.project_number, w.region))),
                entry("service-accounts", Node::Dir(vec![entry("default", account()), entry(w.email(), account())])),
                entry("zone", Node::Text(format!("projects/{}/zones/{}", w.project_number, w.zone))),
            ]),
        ),
        entry(
            "project",
            Node::Dir(vec![
                entry("numeric-project-id", Node::Number(w.project_number.clone())),
                entry("project-id", Node::Text(w.project_id.clone())),
            ]),
        ),
        entry("universe", Node::Dir(vec![entry("universe-domain", Node::Text("googleapis.com".to_owned()))])),
    ])
}

impl Node {
    /// The entry a path segment names. Account emails match whatever their case.
    pub(crate) fn child(&self, segment: &str) -> Option<&Node> {
        let Node::Dir(entries) = self else { return None };
        let matches = |e: &&Entry| {
            if segment.contains('@') { e.name.eq_ignore_ascii_case(segment) } else { e.name == segment }
        };
        entries.iter().find(matches).map(|e| &e.node)
    }

    pub(crate) fn is_dir(&self) -> bool {
        matches!(self, Node::Dir(_))
    }

    /// A directory's entries one per line, directories with a trailing `/`.
    pub(crate) fn listing(&self) -> Vec<String> {
        let Node::Dir(entries) = self else { return Vec::new() };
        entries.iter().map(|e| if e.node.is_dir() { format!("{}/", e.name) } else { e.name.clone() }).collect()
    }

    /// The JSON GCE gives for `?recursive=true` (directories) or `?alt=json` (values).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Node::Dir(entries) => {
                let mut map = Map::new();
                for e in entries {
                    if !matches!(e.node, Node::Token | Node::Identity) {
                        map.insert(e.key.clone(), e.node.to_json());
                    }
                }
                Value::Object(map)
            }
            Node::Text(t) => Value::String(t.clone()),
            Node::Number(n) => n.parse::<u64>().map_or_else(|_| Value::String(n.clone()), Value::from),
            Node::Lines(l) => Value::from(l.clone()),
            Node::Token | Node::Identity => Value::Null,
        }
    }

    /// A stored value as text: the value itself, or one line per item.
    pub(crate) fn to_text(&self) -> Option<String> {
        match self {
            Node::Text(t) | Node::Number(t) => Some(t.clone()),
            Node::Lines(l) => Some(l.iter().map(|s| format!("{s}\n")).collect()),
            Node::Dir(_) | Node::Token | Node::Identity => None,
        }
    }

    /// `recursive=true&alt=text`: one `path value` line per stored value, list items indexed
    /// (`aliases/0 default`).
    pub(crate) fn flatten(&self, prefix: &str, out: &mut String) {
        let join = |name: &str| if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
        match self {
            Node::Dir(entries) => {
                for e in entries {
                    e.node.flatten(&join(&e.name), out);
                }
            }
            Node::Text(v) | Node::Number(v) => out.push_str(&format!("{prefix} {v}\n")),
            Node::Lines(l) => {
                for (i, v) in l.iter().enumerate() {
                    out.push_str(&format!("{} {v}\n", join(&i.to_string())));
                }
            }
            Node::Token | Node::Identity => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_are_camel_case() {
        assert_eq!(camel("numeric-project-id"), "numericProjectId");
        assert_eq!(camel("service-accounts"), "serviceAccounts");
        assert_eq!(camel("email"), "email");
        assert_eq!(camel("a-b@c-d.com"), "a-b@c-d.com");
    }
}

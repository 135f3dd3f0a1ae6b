//! `moat explain`: one question answered layer by layer, or the whole matrix.

use std::fmt::Write as _;
use std::path::PathBuf;

use moat_policy::explain::{Answer, Query, layer_of, matrix, query};
use moat_policy::{Effect, Entry, Origin, Principal};

use crate::exit::{Exit, report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Dot,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project directory (contains moat.yaml).
    pub project: PathBuf,
    /// The service asked about; without `--from`, the matrix for this service only.
    #[arg(long)]
    pub service: Option<String>,
    /// Where the request comes from: internet | vpc:NETWORK | vpc:HOSTPROJECT/NETWORK |
    /// service:NAME | google:PRODUCT[@PROJECT].
    #[arg(long)]
    pub from: Option<String>,
    /// The door: default-url (default) | tag:TAG | domain:HOST | lb:NAME.
    #[arg(long)]
    pub via: Option<String>,
    /// Who calls: anonymous | user:EMAIL | serviceAccount:EMAIL. Default: a calling service's
    /// runtime service account, else anonymous.
    #[arg(long = "as")]
    pub principal: Option<String>,
    /// The `aud` of the caller's ID token (default: the service's URL).
    #[arg(long)]
    pub audience: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// A bad command line, reported with exit status 2.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{0}")]
struct Usage(String);

pub fn run(args: Args) -> Exit {
    let project = match crate::project_dir::load(&args.project) {
        Ok(p) => p,
        Err(e) => return report(e),
    };
    match (&args.service, &args.from) {
        (Some(service), Some(from)) => {
            let q = match parse_query(service, from, &args) {
                Ok(q) => q,
                Err(e) => return report(Usage(e)),
            };
            if args.format == Format::Dot {
                return report(Usage("`--format dot` draws the matrix; drop `--from` or use human/json".into()));
            }
            match query(&project, &q) {
                Ok(a) => {
                    print!("{}", if args.format == Format::Json { json(&a) } else { human(&a) });
                    Exit::Clean
                }
                Err(e) => report(Usage(e.to_string())),
            }
        }
        (None, Some(_)) => report(Usage("`--from` needs `--service NAME`".into())),
        (service, None) => {
            if args.via.is_some() || args.principal.is_some() || args.audience.is_some() {
                return report(Usage("`--via`, `--as` and `--audience` need `--from` (they ask one question)".into()));
            }
            match matrix(&project, service.as_deref()) {
                Ok(answers) => {
                    print!(
                        "{}",
                        match args.format {
                            Format::Json => matrix_json(&answers),
                            Format::Human => matrix_human(&answers),
                            Format::Dot => matrix_dot(&answers),
                        }
                    );
                    Exit::Clean
                }
                Err(e) => report(Usage(e.to_string())),
            }
        }
    }
}

fn parse_query(service: &str, from: &str, args: &Args) -> Result<Query, String> {
    let origin: Origin = from.parse().map_err(|e: moat_policy::request::ParseError| e.0)?;
    let entry: Entry = match &args.via {
        Some(v) => v.parse().map_err(|e: moat_policy::request::ParseError| e.0)?,
        None => Entry::DefaultUrl,
    };
    let principal: Option<Principal> = match &args.principal {
        Some(p) => Some(p.parse().map_err(|e: moat_policy::request::ParseError| e.0)?),
        None => None,
    };
    if args.audience.is_some() && principal == Some(Principal::Anonymous) {
        return Err("`--audience` describes a token, but `--as anonymous` sends none".into());
    }
    Ok(Query { service: service.to_owned(), origin, entry, principal, audience: args.audience.clone() })
}

fn json(a: &Answer) -> String {
    let mut s = serde_json::to_string_pretty(a).unwrap_or_default();
    s.push('\n');
    s
}

fn matrix_json(answers: &[Answer]) -> String {
    let mut s = serde_json::to_string(&serde_json::json!({ "decisions": answers })).unwrap_or_default();
    s.push('\n');
    s
}

fn verdict(a: &Answer) -> String {
    match (a.effect, a.status) {
        (Effect::Allow, _) => "ALLOW: 200, the request reaches the container".to_owned(),
        (Effect::Deny, Some(s)) => format!("DENY at {}: HTTP {s}", a.layer.map(|l| l.to_string()).unwrap_or_default()),
        (Effect::Deny, None) => format!(
            "DENY at {}: no HTTP response (the path does not exist)",
            a.layer.map(|l| l.to_string()).unwrap_or_default()
        ),
    }
}

/// The path as a trace: one line per step, grouped by layer, with the config line behind it.
pub fn human(a: &Answer) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} ← {} via {} as {}", a.service, a.origin, a.entry, a.principal);
    let last = a.reasons.len().saturating_sub(1);
    for (i, r) in a.reasons.iter().enumerate() {
        let mark = if a.effect == Effect::Deny && i == last { "✗" } else { "✓" };
        let _ = writeln!(s, "  {:<15}{mark} {}", layer_of(r.code).to_string(), r.message);
        match &r.source {
            Some(src) => {
                let _ = writeln!(s, "  {:<15}  [{}] {src}", "", r.code);
            }
            None => {
                let _ = writeln!(s, "  {:<15}  [{}]", "", r.code);
            }
        }
    }
    let _ = writeln!(s, "→ {}", verdict(a));
    s
}

fn matrix_human(answers: &[Answer]) -> String {
    let mut s = String::new();
    let mut current = "";
    for a in answers {
        if a.service != current {
            current = &a.service;
            let _ = writeln!(s, "{}{}", if s.is_empty() { "" } else { "\n" }, a.service);
        }
        let outcome = match (a.effect, a.status, a.layer) {
            (Effect::Allow, _, _) => "allow 200".to_owned(),
            (_, Some(st), Some(l)) => format!("deny  {st} {l}"),
            (_, None, Some(l)) => format!("deny  --- {l}"),
            _ => "deny".to_owned(),
        };
        let why = a.reasons.last().map(|r| r.code).unwrap_or_default();
        let _ = writeln!(s, "  {:<40} {:<24} {:<48} {:<22} {why}", a.origin, a.entry, a.principal, outcome);
    }
    s
}

/// Who reaches what: one edge per (caller, service) pair that has at least one allowed path,
/// labelled with the doors it may use.
fn matrix_dot(answers: &[Answer]) -> String {
    use std::collections::BTreeMap;
    let mut edges: BTreeMap<(String, &str), Vec<String>> = BTreeMap::new();
    for a in answers.iter().filter(|a| a.effect == Effect::Allow) {
        let from = if a.origin.starts_with("service:") || a.principal == "anonymous" {
            a.origin.clone()
        } else {
            format!("{} as {}", a.origin, a.principal)
        };
        let label = edges.entry((from, a.service.as_str())).or_default();
        if !label.contains(&a.entry) {
            label.push(a.entry.clone());
        }
    }
    let mut s = String::from("digraph moat {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n");
    let q = |x: &str| x.replace('\\', "\\\\").replace('"', "\\\"");
    for ((from, to), label) in &edges {
        let _ = writeln!(
            s,
            "  \"{}\" -> \"{}\" [label=\"{}\"];",
            q(from),
            q(&format!("service:{to}")),
            q(&label.join(", "))
        );
    }
    s.push_str("}\n");
    s
}

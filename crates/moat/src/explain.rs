//! `moat explain`: one question answered layer by layer, or the whole matrix.

use std::fmt::Write as _;
use std::path::PathBuf;

use std::io::Write as _;

use moat_policy::edge::{DEPENDS_ON_REQUEST, EdgeFacts, Gate};
use moat_policy::explain::{Answer, Query, for_each_answer, layer_of, matrix, query};
use moat_policy::ingress::ROLLOUT_PENDING;
use moat_policy::{Effect, Entry, Layer, Origin, Principal};

use crate::exit::{Exit, report};

mod html;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Dot,
    /// One self-contained page: the graph, refusals explained on hover, and every row.
    Html,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project directory (contains moat.yaml), or a Terraform plan or state as
    /// `terraform show -json` prints it (a `.json` file).
    pub project: PathBuf,
    /// The project number, for Terraform input (a plan rarely knows it).
    #[arg(long)]
    pub project_number: Option<String>,
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
    /// The request method, for a load balancer's security policy (`--via lb:NAME`).
    #[arg(long)]
    pub method: Option<String>,
    /// The request path and query (`/a/b?x=1`), for a load balancer's security policy.
    #[arg(long)]
    pub path: Option<String>,
    /// The client address the load balancer sees, for a security policy's `SRC_IPS_V1` and
    /// `origin.ip` rules.
    #[arg(long)]
    pub source_ip: Option<std::net::IpAddr>,
    /// A request header, `NAME:VALUE`; repeat for more. Given once or more, the request carries
    /// exactly these (and the Host); not given, rules that read headers are set aside.
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// The request carries no headers but the Host (so rules that read headers are decided).
    #[arg(long, conflicts_with = "headers")]
    pub no_headers: bool,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// A bad command line, reported with exit status 2.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{0}")]
struct Usage(String);

pub fn run(args: Args) -> Exit {
    let project = match crate::project_dir::load_input(&args.project, args.project_number.as_deref()) {
        Ok(p) => p,
        Err(e) => return report(e),
    };
    match (&args.service, &args.from) {
        (Some(service), Some(from)) => {
            let q = match parse_query(service, from, &args) {
                Ok(q) => q,
                Err(e) => return report(Usage(e)),
            };
            if matches!(args.format, Format::Dot | Format::Html) {
                return report(Usage(
                    "`--format dot` and `--format html` draw the matrix; drop `--from` or use human/json".into(),
                ));
            }
            match query(&project, &q) {
                Ok(a) => {
                    let unknown: Vec<String> = project.unknowns_for(&a.service).map(|u| u.path()).collect();
                    if args.format == Format::Json {
                        print!("{}", json_with_unknowns(&a, &unknown));
                    } else {
                        print!("{}", human(&a));
                        print!("{}", unknown_notes(&unknown));
                    }
                    Exit::Clean
                }
                Err(e) => report(Usage(e.to_string())),
            }
        }
        (None, Some(_)) => report(Usage("`--from` needs `--service NAME`".into())),
        (service, None) => {
            let request_facts =
                args.method.is_some() || args.path.is_some() || args.source_ip.is_some() || !args.headers.is_empty();
            if args.via.is_some() || args.principal.is_some() || args.audience.is_some() || request_facts {
                return report(Usage(
                    "`--via`, `--as`, `--audience`, `--method`, `--path`, `--source-ip`, `--header` and `--no-headers` need `--from` (they ask one question)"
                        .into(),
                ));
            }
            match print_matrix(&project, service.as_deref(), args.format) {
                Ok(()) => {
                    if args.format == Format::Human {
                        print!("{}", unknown_notes(&matrix_unknowns(&project, service.as_deref())));
                    }
                    Exit::Clean
                }
                Err(e) => report(Usage(e)),
            }
        }
    }
}

/// Streams the matrix to stdout: JSON and human rows are written as they are decided; DOT
/// needs the whole picture and aggregates first.
fn print_matrix(project: &moat_policy::Project, service: Option<&str>, format: Format) -> Result<(), String> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut io_err: Option<std::io::Error> = None;
    {
        let mut write = |s: &str| {
            if io_err.is_none()
                && let Err(e) = out.write_all(s.as_bytes())
            {
                io_err = Some(e);
            }
        };
        match format {
            Format::Json => {
                write("{\"decisions\":[");
                let mut first = true;
                for_each_answer(project, service, |a| {
                    write(if first { "\n" } else { ",\n" });
                    first = false;
                    write(&serde_json::to_string(&a).unwrap_or_default());
                })
                .map_err(|e| e.to_string())?;
                write("\n]}\n");
            }
            Format::Human => {
                let widths = column_widths(project);
                let mut current = String::new();
                let mut depends = false;
                for_each_answer(project, service, |a| {
                    if a.service != current {
                        write(&format!("{}{}\n", if current.is_empty() { "" } else { "\n" }, a.service));
                        current.clone_from(&a.service);
                    }
                    depends |= a.edge == Some(Gate::Depends);
                    write(&matrix_row(&a, widths));
                })
                .map_err(|e| e.to_string())?;
                if depends {
                    write(DEPENDS_NOTE);
                }
            }
            Format::Dot => write(&matrix_dot(&matrix(project, service).map_err(|e| e.to_string())?)),
            Format::Html => write(&html::render(
                &project.id,
                &matrix(project, service).map_err(|e| e.to_string())?,
                &matrix_unknowns(project, service),
            )),
        }
    }
    match io_err {
        // A closed pipe (`| head`) is not an error worth reporting.
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("cannot write the matrix: {e}")),
        _ => out
            .flush()
            .or_else(|e| if e.kind() == std::io::ErrorKind::BrokenPipe { Ok(()) } else { Err(e.to_string()) }),
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
    let headers = if args.no_headers {
        Some(Vec::new())
    } else if args.headers.is_empty() {
        None
    } else {
        let parsed: Result<Vec<(String, String)>, String> = args
            .headers
            .iter()
            .map(|h| match h.split_once(':') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
                _ => Err(format!("`--header {h}` is not `NAME:VALUE`")),
            })
            .collect();
        Some(parsed?)
    };
    if let Some(p) = &args.path
        && !p.starts_with('/')
    {
        return Err(format!("`--path {p}` must start with `/`"));
    }
    let request = EdgeFacts {
        method: args.method.as_ref().map(|m| m.to_ascii_uppercase()),
        target: args.path.clone(),
        source_ip: args.source_ip,
        headers,
    };
    Ok(Query { service: service.to_owned(), origin, entry, principal, audience: args.audience.clone(), request })
}

/// Terraform input: the values unknown until apply that the matrix (of `service`, or all)
/// depends on.
fn matrix_unknowns(project: &moat_policy::Project, service: Option<&str>) -> Vec<String> {
    project
        .unknowns
        .iter()
        .filter(|u| u.matters() && service.is_none_or(|s| u.service.as_deref() == Some(s)))
        .map(|u| u.path())
        .collect()
}

/// Terraform input: the values unknown until apply that the answer depends on, one line each.
fn unknown_notes(unknown: &[String]) -> String {
    unknown.iter().map(|u| format!("  depends on a value unknown until apply: {u}\n")).collect()
}

/// The answer as JSON, with `depends_on_unknown` added when the plan leaves some of its
/// inputs unknown (never present for a project directory).
fn json_with_unknowns(a: &Answer, unknown: &[String]) -> String {
    if unknown.is_empty() {
        return json(a);
    }
    let mut v = serde_json::to_value(a).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("depends_on_unknown".into(), serde_json::json!(unknown));
    }
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

fn json(a: &Answer) -> String {
    let mut s = serde_json::to_string_pretty(a).unwrap_or_default();
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
        let mark = if r.code == DEPENDS_ON_REQUEST {
            "?"
        } else if r.code == ROLLOUT_PENDING {
            // Not a step passed: a warning that the desired setting is not the one deciding.
            "!"
        } else if a.effect == Effect::Deny && i == last {
            "✗"
        } else {
            "✓"
        };
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
    if a.reasons.iter().any(|r| r.code == DEPENDS_ON_REQUEST) {
        let _ = writeln!(
            s,
            "  unless a security policy rule marked ? matches: give the request facts it depends on to decide it"
        );
    }
    s
}

/// Column widths for the human matrix, known before the first row so rows can stream.
fn column_widths(project: &moat_policy::Project) -> (usize, usize, usize) {
    use moat_policy::explain::{entries, origins, principals};
    let origin = project.services.keys().flat_map(|s| origins(project, s)).map(|o| o.to_string().len()).max();
    let entry = project.services.values().flat_map(|s| entries(project, s)).map(|e| e.to_string().len()).max();
    let principal = principals(project).iter().map(|p| p.to_string().len()).max();
    (origin.unwrap_or(8), entry.unwrap_or(11), principal.unwrap_or(9))
}

fn matrix_row(a: &Answer, (wo, we, wp): (usize, usize, usize)) -> String {
    let outcome = match (a.effect, a.status, a.layer) {
        (Effect::Allow, _, _) => "allow 200".to_owned(),
        (_, Some(st), Some(l)) => format!("deny  {st} {l}"),
        (_, None, Some(l)) => format!("deny  --- {l}"),
        _ => "deny".to_owned(),
    };
    let why = a.reasons.last().map(|r| r.code).unwrap_or_default();
    let edge = if a.edge == Some(Gate::Depends) { "  ? edge" } else { "" };
    format!("  {:<wo$}  {:<we$}  {:<wp$}  {outcome:<24} {why}{edge}\n", a.origin, a.entry, a.principal)
}

/// Under a human matrix with rows marked `? edge`.
const DEPENDS_NOTE: &str = "\n? edge: the load balancer's security policy refuses some requests and not others, and the matrix has no request facts; ask `moat explain PROJECT --service NAME --from ORIGIN --via lb:NAME` with `--method`, `--path`, `--source-ip` or `--header`\n";

/// Who reaches what: one edge per (caller, service) pair that has at least one allowed path,
/// labelled with the doors it may use (`lb:NAME (edge: depends)` when the load balancer's
/// security policy refuses some requests); and one red dashed edge per (origin, service) pair
/// with a load balancer the network reaches but whose policy refuses every request.
fn matrix_dot(answers: &[Answer]) -> String {
    use std::collections::BTreeMap;
    let mut edges: BTreeMap<(String, &str), Vec<String>> = BTreeMap::new();
    let mut closed: BTreeMap<(String, &str), Vec<String>> = BTreeMap::new();
    let add = |label: &mut Vec<String>, door: String| {
        if !label.contains(&door) {
            label.push(door);
        }
    };
    for a in answers {
        if a.effect == Effect::Allow {
            let from = if a.origin.starts_with("service:") || a.principal == "anonymous" {
                a.origin.clone()
            } else {
                format!("{} as {}", a.origin, a.principal)
            };
            let door =
                if a.edge == Some(Gate::Depends) { format!("{} (edge: depends)", a.entry) } else { a.entry.clone() };
            add(edges.entry((from, a.service.as_str())).or_default(), door);
        } else if a.edge == Some(Gate::Closed) && a.layer == Some(Layer::Edge) {
            add(
                closed.entry((a.origin.clone(), a.service.as_str())).or_default(),
                format!("{} (edge: closed)", a.entry),
            );
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
    for ((from, to), label) in &closed {
        let _ = writeln!(
            s,
            "  \"{}\" -> \"{}\" [label=\"{}\", style=dashed, color=red, fontcolor=red];",
            q(from),
            q(&format!("service:{to}")),
            q(&label.join(", "))
        );
    }
    s.push_str("}\n");
    s
}

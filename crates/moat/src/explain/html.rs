//! `moat explain --format html`: the matrix as one self-contained page. A graph of origins →
//! entries → services, one line per (origin, entry, service) coloured by whether anyone gets
//! through, with the refusals (layer, status, reasons) in each line's `<title>`; below it, a
//! table with every row of the matrix.
//!
//! Rendered here, in Rust, rather than by script in the page: the bytes are then a pure
//! function of the matrix (deterministic, testable without a browser), every string passes
//! through one escaping function, and the page reads the same with scripts off. The page's
//! script only adds a hover tooltip, highlighting and a table filter.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use moat_policy::edge::{DEPENDS_ON_REQUEST, Gate};
use moat_policy::explain::{Answer, layer_of};
use moat_policy::{Effect, Layer};

/// The page around the graph and the table: CSS and script inline, no external resources.
const TEMPLATE: &str = include_str!("report.html");

const ORIGIN_X: f64 = 10.0;
const ENTRY_X: f64 = 460.0;
const SERVICE_X: f64 = 910.0;
const NODE_W: f64 = 290.0;
/// Characters of a label that fit in a node at 12px monospace; longer ones end in `…` (the
/// node's `<title>` has the whole name).
const CHAR_W: f64 = 7.3;
const SERVICE_W: f64 = 200.0;
const WIDTH: f64 = SERVICE_X + SERVICE_W + 10.0;
/// Vertical room per line where it meets a node, so lines do not sit on top of each other.
const LANE: f64 = 4.0;
const PAD: f64 = 8.0;
const MIN_H: f64 = 28.0;
const GAP: f64 = 14.0;
const TOP: f64 = 40.0;

/// The page for `answers` (the matrix of project `project_id`); `unknown` lists the values
/// a Terraform plan leaves unknown until apply that the matrix depends on.
pub fn render(project_id: &str, answers: &[Answer], unknown: &[String]) -> String {
    let graph = Graph::new(answers);
    let allowed = answers.iter().filter(|a| a.effect == Effect::Allow).count();
    let summary = format!(
        "{} services, {} origins, {} entries, {} paths; {} of {} decisions allow",
        graph.services.names.len(),
        graph.origins.names.len(),
        graph.entries.names.len(),
        graph.paths.len(),
        allowed,
        answers.len()
    );
    let notes: String = unknown
        .iter()
        .map(|u| format!("<li>depends on a value unknown until apply: <code>{}</code></li>\n", esc(u)))
        .collect();
    let notes = if notes.is_empty() { String::new() } else { format!("<ul id=\"moat-unknowns\">\n{notes}</ul>\n") };
    fill(TEMPLATE, |name| match name {
        "PROJECT" => Some(esc(project_id)),
        "SUMMARY" => Some(esc(&summary)),
        "NOTES" => Some(notes.clone()),
        "GRAPH" => Some(graph.svg()),
        "TABLE" => Some(table(answers)),
        _ => None,
    })
}

/// Names in the order the matrix first shows them, which is the order of the columns.
#[derive(Default)]
struct Column {
    names: Vec<String>,
    index: BTreeMap<String, usize>,
}

impl Column {
    fn add(&mut self, name: String) -> usize {
        if let Some(i) = self.index.get(&name) {
            return *i;
        }
        let i = self.names.len();
        self.index.insert(name.clone(), i);
        self.names.push(name);
        i
    }
}

/// One line of the graph: what every principal gets on (origin, entry, service).
struct Path<'a> {
    answers: Vec<&'a Answer>,
    /// Lane of this line in its origin, entry and service node.
    lanes: [usize; 3],
}

struct Graph<'a> {
    origins: Column,
    /// An entry node is a door: a load balancer or mapped domain is one node whatever it
    /// routes to; a run.app URL or tag belongs to its service, so it is keyed by both.
    entries: Column,
    services: Column,
    paths: BTreeMap<(usize, usize, usize), Path<'a>>,
}

/// Where a node sits: its top and its height.
#[derive(Clone, Copy)]
struct Slot {
    y: f64,
    h: f64,
}

fn entry_key(a: &Answer) -> String {
    if a.entry.starts_with("lb:") || a.entry.starts_with("domain:") {
        a.entry.clone()
    } else {
        format!("{}/{}", a.service, a.entry)
    }
}

impl<'a> Graph<'a> {
    fn new(answers: &'a [Answer]) -> Self {
        let mut g = Graph {
            origins: Column::default(),
            entries: Column::default(),
            services: Column::default(),
            paths: BTreeMap::new(),
        };
        for a in answers {
            let key = (g.origins.add(a.origin.clone()), g.entries.add(entry_key(a)), g.services.add(a.service.clone()));
            g.paths.entry(key).or_insert_with(|| Path { answers: Vec::new(), lanes: [0; 3] }).answers.push(a);
        }
        // Lanes follow the other end of each line, so lines fan out without crossing inside a node.
        let mut next = [BTreeMap::new(), BTreeMap::new(), BTreeMap::new()];
        let mut by_service: Vec<(usize, usize, usize)> = g.paths.keys().copied().collect();
        by_service.sort_by_key(|&(o, e, s)| (s, e, o));
        for (&(o, e, _), p) in &mut g.paths {
            p.lanes[0] = bump(&mut next[0], o);
            p.lanes[1] = bump(&mut next[1], e);
        }
        for k in by_service {
            if let Some(p) = g.paths.get_mut(&k) {
                p.lanes[2] = bump(&mut next[2], k.2);
            }
        }
        g
    }

    fn svg(&self) -> String {
        let lanes = |col: usize| {
            let mut n: BTreeMap<usize, usize> = BTreeMap::new();
            for k in self.paths.keys() {
                let node = [k.0, k.1, k.2].get(col).copied().unwrap_or_default();
                *n.entry(node).or_default() += 1;
            }
            n
        };
        let counts = [lanes(0), lanes(1), lanes(2)];
        let [c0, c1, c2] = &counts;
        let origins = slots(self.origins.names.len(), c0);
        let entries = slots(self.entries.names.len(), c1);
        let services = slots(self.services.names.len(), c2);
        let bottom =
            [&origins, &entries, &services].iter().filter_map(|c| c.last()).map(|s| s.y + s.h).fold(TOP, f64::max);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg id=\"moat-graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{h:.0}\" viewBox=\"0 0 {WIDTH} {h:.0}\" role=\"img\" aria-labelledby=\"moat-graph-title\">",
            h = bottom + GAP
        );
        s.push_str("<title id=\"moat-graph-title\">origins, entries and services; allowed paths in green, refused in red</title>\n");
        for (x, label) in [(ORIGIN_X, "origins"), (ENTRY_X, "entries"), (SERVICE_X, "services")] {
            let _ = writeln!(s, "<text class=\"heading\" x=\"{x}\" y=\"20\">{label}</text>");
        }
        // Refused lines first, so that allowed ones are drawn over them.
        for effect in [Effect::Deny, Effect::Allow] {
            for (&(o, e, v), p) in self.paths.iter().filter(|(_, p)| path_effect(p) == effect) {
                let (Some(os), Some(es), Some(vs)) = (origins.get(o), entries.get(e), services.get(v)) else {
                    continue;
                };
                let [lo, le, lv] = p.lanes;
                let y0 = lane_y(*os, c0.get(&o).copied().unwrap_or(1), lo);
                let y1 = lane_y(*es, c1.get(&e).copied().unwrap_or(1), le);
                let y2 = lane_y(*vs, c2.get(&v).copied().unwrap_or(1), lv);
                s.push_str(&self.path_element(o, e, v, p, [y0, y1, y2]));
            }
        }
        for (name, slot) in self.origins.names.iter().zip(&origins) {
            s.push_str(&node(
                "origin",
                &format!("origin-{}", id(name)),
                ORIGIN_X,
                NODE_W,
                *slot,
                name,
                &[("origin", name)],
            ));
        }
        for (key, slot) in self.entries.names.iter().zip(&entries) {
            let (service, entry) = match key.split_once('/') {
                Some((svc, e)) if !key.starts_with("lb:") && !key.starts_with("domain:") => (Some(svc), e),
                _ => (None, key.as_str()),
            };
            let label = match service {
                Some(svc) => format!("{svc} {entry}"),
                None => entry.to_owned(),
            };
            let mut data = vec![("entry", entry)];
            data.extend(service.map(|svc| ("service", svc)));
            s.push_str(&node("entry", &format!("entry-{}", id(key)), ENTRY_X, NODE_W, *slot, &label, &data));
        }
        for (name, slot) in self.services.names.iter().zip(&services) {
            s.push_str(&node(
                "service",
                &format!("service-{}", id(name)),
                SERVICE_X,
                SERVICE_W,
                *slot,
                name,
                &[("service", name)],
            ));
        }
        s.push_str("</svg>\n");
        s
    }

    fn path_element(&self, o: usize, e: usize, v: usize, p: &Path<'_>, [y0, y1, y2]: [f64; 3]) -> String {
        let name = |c: &Column, i: usize| c.names.get(i).cloned().unwrap_or_default();
        let (origin, entry_node, service) = (name(&self.origins, o), name(&self.entries, e), name(&self.services, v));
        let entry = p.answers.first().map(|a| a.entry.clone()).unwrap_or_default();
        let allowed = p.answers.iter().filter(|a| a.effect == Effect::Allow).count();
        let effect = effect_name(path_effect(p));
        let edge = edge_attr(p.answers.first().and_then(|a| a.edge));
        let (x0, x1, x2, x3) = (ORIGIN_X + NODE_W, ENTRY_X, ENTRY_X + NODE_W, SERVICE_X);
        let (m0, m1) = ((x0 + x1) / 2.0, (x2 + x3) / 2.0);
        format!(
            "<path class=\"edge {effect}\" d=\"M{x0},{y0:.1} C{m0},{y0:.1} {m0},{y1:.1} {x1},{y1:.1} L{x2},{y1:.1} C{m1},{y1:.1} {m1},{y2:.1} {x3},{y2:.1}\" data-origin=\"{}\" data-entry=\"{}\" data-service=\"{}\" data-effect=\"{effect}\"{edge} data-allowed=\"{allowed}\" data-refused=\"{}\" data-nodes=\"origin-{} entry-{} service-{}\" tabindex=\"0\"><title>{}</title></path>\n",
            esc(&origin),
            esc(&entry),
            esc(&service),
            p.answers.len() - allowed,
            esc(&id(&origin)),
            esc(&id(&entry_node)),
            esc(&id(&service)),
            esc(&hover(&origin, &entry, &service, &p.answers)),
        )
    }
}

fn bump(next: &mut BTreeMap<usize, usize>, node: usize) -> usize {
    let n = next.entry(node).or_insert(0);
    *n += 1;
    *n - 1
}

/// A line is allowed when at least one principal gets through it.
fn path_effect(p: &Path<'_>) -> Effect {
    if p.answers.iter().any(|a| a.effect == Effect::Allow) { Effect::Allow } else { Effect::Deny }
}

/// Stacks `count` nodes down a column, each tall enough for its lanes.
fn slots(count: usize, lanes: &BTreeMap<usize, usize>) -> Vec<Slot> {
    let mut y = TOP;
    (0..count)
        .map(|i| {
            let n = lanes.get(&i).copied().unwrap_or(0) as f64;
            let h = (n * LANE + 2.0 * PAD).max(MIN_H);
            let slot = Slot { y, h };
            y += h + GAP;
            slot
        })
        .collect()
}

fn lane_y(slot: Slot, lanes: usize, lane: usize) -> f64 {
    let used = lanes as f64 * LANE;
    slot.y + (slot.h - used) / 2.0 + (lane as f64 + 0.5) * LANE
}

fn node(class: &str, node_id: &str, x: f64, w: f64, slot: Slot, label: &str, data: &[(&str, &str)]) -> String {
    let attrs: String = data.iter().map(|(k, v)| format!(" data-{k}=\"{}\"", esc(v))).collect();
    format!(
        "<g class=\"node {class}\" id=\"{}\"{attrs}><title>{}</title><rect x=\"{x}\" y=\"{:.1}\" width=\"{w}\" height=\"{:.1}\" rx=\"4\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>\n",
        esc(node_id),
        esc(label),
        slot.y,
        slot.h,
        x + 8.0,
        slot.y + slot.h / 2.0 + 4.0,
        esc(&shorten(label, ((w - 16.0) / CHAR_W) as usize)),
    )
}

fn shorten(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        return label.to_owned();
    }
    let mut s: String = label.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// An HTML id: names never hold whitespace in practice, but an id must not.
fn id(name: &str) -> String {
    name.chars().map(|c| if c.is_whitespace() { '_' } else { c }).collect()
}

fn outcome(a: &Answer) -> String {
    match (a.effect, a.status, a.layer) {
        (Effect::Allow, _, _) => "allowed: HTTP 200".to_owned(),
        (_, Some(st), Some(l)) => format!("refused at {l}: HTTP {st}"),
        (_, None, Some(l)) => format!("refused at {l}: no HTTP response"),
        _ => "refused".to_owned(),
    }
}

/// The reasons that decided a refusal: those of the refusing layer (the earlier ones only say
/// which layers let the request through).
fn refusing_reasons(a: &Answer) -> Vec<String> {
    let of_layer: Vec<String> = a
        .reasons
        .iter()
        .filter(|r| Some(layer_of(r.code)) == a.layer && r.code != DEPENDS_ON_REQUEST)
        .map(reason_line)
        .collect();
    if of_layer.is_empty() { a.reasons.last().map(reason_line).into_iter().collect() } else { of_layer }
}

fn reason_line(r: &moat_policy::Reason) -> String {
    match &r.source {
        Some(src) => format!("{} [{}] {src}", r.message, r.code),
        None => format!("{} [{}]", r.message, r.code),
    }
}

/// What refused a request: the layer, the status and the reasons of that layer.
type Refusal = (Option<Layer>, Option<u16>, Vec<String>);

/// The hover text of a line: who gets through, then each refusal with its layer, status and
/// reasons, principals that meet the same refusal grouped together.
fn hover(origin: &str, entry: &str, service: &str, answers: &[&Answer]) -> String {
    let mut s = format!("{origin} → {entry} → {service}\n");
    match answers.first().and_then(|a| a.edge) {
        Some(Gate::Closed) => {
            let _ = writeln!(s, "closed: the security policy of {entry} refuses every request");
        }
        Some(Gate::Depends) => {
            let _ = writeln!(
                s,
                "? the security policy of {entry} refuses some requests: ask `moat explain` with `--via {entry}` and the request facts"
            );
        }
        Some(Gate::Open) | None => {}
    }
    let allowed: Vec<&str> =
        answers.iter().filter(|a| a.effect == Effect::Allow).map(|a| a.principal.as_str()).collect();
    if !allowed.is_empty() {
        let _ = writeln!(s, "allowed (HTTP 200) for {} of {}: {}", allowed.len(), answers.len(), allowed.join(", "));
        let mut pending: Vec<String> = Vec::new();
        for a in answers.iter().filter(|a| a.effect == Effect::Allow) {
            for r in a.reasons.iter().filter(|r| r.code == DEPENDS_ON_REQUEST) {
                let line = reason_line(r);
                if !pending.contains(&line) {
                    pending.push(line);
                }
            }
        }
        for p in pending {
            let _ = writeln!(s, "  ? {p}");
        }
    }
    let mut refusals: Vec<(Refusal, Vec<&str>)> = Vec::new();
    for a in answers.iter().filter(|a| a.effect == Effect::Deny) {
        let key = (a.layer, a.status, refusing_reasons(a));
        match refusals.iter_mut().find(|(k, _)| *k == key) {
            Some((_, who)) => who.push(&a.principal),
            None => refusals.push((key, vec![&a.principal])),
        }
    }
    for ((layer, status, reasons), who) in refusals {
        let layer = layer.map(|l| l.to_string()).unwrap_or_default();
        let status = status.map_or_else(|| "no HTTP response".to_owned(), |st| format!("HTTP {st}"));
        if who.len() == answers.len() {
            let _ = writeln!(s, "refused at {layer} ({status}) for all {} principals", who.len());
        } else {
            let _ = writeln!(s, "refused at {layer} ({status}) for {}: {}", who.len(), who.join(", "));
        }
        for r in reasons {
            let _ = writeln!(s, "  ✗ {r}");
        }
    }
    s.truncate(s.trim_end().len());
    s
}

/// Every row of the matrix, for screen readers, search and copying.
fn table(answers: &[Answer]) -> String {
    let mut s = String::from(
        "<table id=\"moat-matrix\">\n<thead><tr><th scope=\"col\">service</th><th scope=\"col\">origin</th><th scope=\"col\">entry</th><th scope=\"col\">principal</th><th scope=\"col\">outcome</th><th scope=\"col\">reason</th></tr></thead>\n<tbody>\n",
    );
    for a in answers {
        let reason = if a.effect == Effect::Deny {
            refusing_reasons(a).join("; ")
        } else {
            a.reasons.last().map(reason_line).unwrap_or_default()
        };
        let effect = effect_name(a.effect);
        let edge = edge_attr(a.edge);
        let _ = writeln!(
            s,
            "<tr class=\"{effect}\" data-service=\"{sv}\" data-origin=\"{o}\" data-entry=\"{e}\" data-principal=\"{p}\" data-effect=\"{effect}\"{edge}><td>{sv}</td><td>{o}</td><td>{e}</td><td>{p}</td><td>{}</td><td>{}</td></tr>",
            esc(&outcome(a)),
            esc(&reason),
            sv = esc(&a.service),
            o = esc(&a.origin),
            e = esc(&a.entry),
            p = esc(&a.principal),
        );
    }
    s.push_str("</tbody>\n</table>\n");
    s
}

/// ` data-edge="open|depends|closed"` for an entry with a security policy, else nothing.
fn edge_attr(gate: Option<Gate>) -> &'static str {
    match gate {
        None => "",
        Some(Gate::Open) => " data-edge=\"open\"",
        Some(Gate::Depends) => " data-edge=\"depends\"",
        Some(Gate::Closed) => " data-edge=\"closed\"",
    }
}

fn effect_name(e: Effect) -> &'static str {
    if e == Effect::Allow { "allow" } else { "deny" }
}

/// Escapes text for HTML content and double- or single-quoted attributes alike.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills `{{NAME}}` holes in one pass, so text put in a hole is never read as a hole itself.
fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let hole = after.get(2..).and_then(|a| a.find("}}").map(|end| (a.get(..end), a.get(end + 2..))));
        match hole.and_then(|(name, tail)| Some((value(name?)?, tail?))) {
            Some((v, tail)) => {
                out.push_str(&v);
                rest = tail;
            }
            None => {
                out.push_str("{{");
                rest = after.get(2..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_policy::Reason;

    fn answer(
        principal: &str,
        effect: Effect,
        layer: Option<Layer>,
        status: Option<u16>,
        reasons: Vec<Reason>,
    ) -> Answer {
        Answer {
            service: "api".into(),
            origin: "internet".into(),
            entry: "default-url".into(),
            principal: principal.into(),
            effect,
            status,
            layer,
            reasons,
            edge: None,
        }
    }

    #[test]
    fn escapes_markup_and_both_quotes() {
        assert_eq!(
            esc(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_filled_hole_is_not_filled_again() {
        let out = fill("<p>{{A}}</p>{{B}}{{unknown}}{{", |n| (n == "A").then(|| "{{B}}".to_owned()));
        assert_eq!(out, "<p>{{B}}</p>{{B}}{{unknown}}{{");
    }

    #[test]
    fn hover_groups_principals_refused_for_the_same_reason() {
        let ingress = || {
            vec![Reason::new("ingress.internal_only", "ingress `internal` refuses requests from the internet", None)]
        };
        let denied = |p| answer(p, Effect::Deny, Some(Layer::Ingress), Some(404), ingress());
        let allowed = answer("user:a@example.com", Effect::Allow, None, Some(200), Vec::new());
        let (a, b) = (denied("anonymous"), denied("user:b@example.com"));
        let text = hover("internet", "default-url", "api", &[&allowed, &a, &b]);
        assert_eq!(
            text,
            "internet → default-url → api\n\
             allowed (HTTP 200) for 1 of 3: user:a@example.com\n\
             refused at ingress (HTTP 404) for 2: anonymous, user:b@example.com\n  \
             ✗ ingress `internal` refuses requests from the internet [ingress.internal_only]"
        );
    }

    #[test]
    fn long_labels_end_in_an_ellipsis() {
        assert_eq!(shorten("google:synthetic-monitors@shop-prod", 10), "google:sy…");
        assert_eq!(shorten("internet", 10), "internet");
    }
}

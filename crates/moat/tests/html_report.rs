//! `moat explain --format html`, checked in a real browser: each report is rendered by headless
//! Chromium (`--dump-dom`, so what is asserted is the DOM after the page's script ran), and the
//! graph is compared with the matrix `--format json` prints for the same input.
//!
//! Chromium is required, not optional: without it these tests fail and say how to install it
//! (`scripts/test-all` does). `CHROMIUM=/path/to/browser` picks another binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `moat explain INPUT ARGS...` from the repository root; expects success and returns stdout.
fn moat_explain(input: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(root())
        .arg("explain")
        .arg(input)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("moat runs");
    assert!(out.status.success(), "moat explain {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// The browser: `$CHROMIUM`, else `chromium` (Debian) or `chromium-browser` on the PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "CHROMIUM={} is not a file: point it at a Chromium binary, or unset it", p.display());
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser"] {
        if let Some(found) = std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()) {
            return found;
        }
    }
    panic!(
        "headless Chromium is missing, and the HTML report tests need it: install it \
         (Debian/Ubuntu: `apt-get install chromium`; scripts/test-all does) and run again"
    );
}

/// Writes `html` under the test's scratch directory, loads it in headless Chromium and returns
/// the DOM as serialised after the page's script ran.
fn dump_dom(name: &str, html: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html_report").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    std::fs::write(&page, html).unwrap();
    let page = page.canonicalize().unwrap();
    let mut child = Command::new(chromium())
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        // One profile per test: tests run in parallel and Chromium locks its profile.
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Read while it runs: the DOM is larger than a pipe's buffer.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish rendering {} within 120 s", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = String::from_utf8(stdout.join().unwrap()).expect("utf-8 DOM");
    let stderr = stderr.join().unwrap();
    assert!(
        status.success() && dom.contains("</html>"),
        "chromium failed on {}:\n{}",
        page.display(),
        String::from_utf8_lossy(&stderr)
    );
    assert!(
        dom.contains("<html lang=\"en\" data-moat-ready=\"1\">"),
        "the page's script did not run to the end (no data-moat-ready on <html>):\n{}",
        &dom[..dom.len().min(2000)]
    );
    dom
}

/// One element of the serialised DOM: its attributes and the text of its `<title>` child.
#[derive(Debug)]
struct Element {
    attrs: BTreeMap<String, String>,
    title: String,
}

/// Every `<TAG ...>` element in `dom` whose attributes parse, with the `<title>` it holds.
/// Chromium serialises attributes as `name="value"` with `&`, `"`, `<`, `>` escaped.
fn elements(dom: &str, tag: &str) -> Vec<Element> {
    let open = format!("<{tag} ");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let end_of_tag = rest.find('>').unwrap();
        let mut attrs = BTreeMap::new();
        let mut a = &rest[..end_of_tag];
        while let Some(eq) = a.find("=\"") {
            let name = a[..eq].trim().to_owned();
            let after = &a[eq + 2..];
            let q = after.find('"').unwrap();
            attrs.insert(name, unescape(&after[..q]));
            a = &after[q + 1..];
        }
        let body_end = rest.find(&close).unwrap_or(end_of_tag);
        let body = &rest[end_of_tag + 1..body_end.max(end_of_tag + 1)];
        let title = match (body.find("<title>"), body.find("</title>")) {
            (Some(s), Some(e)) if s < e => unescape(&body[s + "<title>".len()..e]),
            _ => String::new(),
        };
        out.push(Element { attrs, title });
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The graph's line for (origin, entry, service); exactly one must exist.
fn path<'a>(paths: &'a [Element], origin: &str, entry: &str, service: &str) -> &'a Element {
    let found: Vec<&Element> = paths
        .iter()
        .filter(|p| {
            p.attrs.get("data-origin").map(String::as_str) == Some(origin)
                && p.attrs.get("data-entry").map(String::as_str) == Some(entry)
                && p.attrs.get("data-service").map(String::as_str) == Some(service)
        })
        .collect();
    assert_eq!(found.len(), 1, "one line {origin} → {entry} → {service}, found {found:?}");
    found[0]
}

/// Renders `input` as HTML in Chromium and checks the page against the JSON matrix: one line
/// per (origin, entry, service), `allow` exactly when some principal gets through, a node for
/// every origin and service, one table row per decision. Returns the lines.
fn render_and_match_the_matrix(name: &str, input: &Path) -> (String, Vec<Element>) {
    let html = moat_explain(input, &["--format", "html"]);
    let dom = dump_dom(name, &html);
    let json: serde_json::Value = serde_json::from_str(&moat_explain(input, &["--format", "json"])).unwrap();
    let decisions = json["decisions"].as_array().unwrap();
    let mut expected: BTreeMap<(String, String, String), bool> = BTreeMap::new();
    let mut gates: BTreeMap<(String, String, String), Option<String>> = BTreeMap::new();
    for d in decisions {
        let key = (
            d["origin"].as_str().unwrap().to_owned(),
            d["entry"].as_str().unwrap().to_owned(),
            d["service"].as_str().unwrap().to_owned(),
        );
        gates.insert(key.clone(), d.get("edge").map(|e| e.as_str().unwrap().to_owned()));
        *expected.entry(key).or_default() |= d["effect"] == "allow";
    }
    let paths: Vec<Element> =
        elements(&dom, "path").into_iter().filter(|p| p.attrs.contains_key("data-effect")).collect();
    assert_eq!(paths.len(), expected.len(), "one line per (origin, entry, service) of the matrix");
    for ((origin, entry, service), allowed) in &expected {
        let p = path(&paths, origin, entry, service);
        assert_eq!(p.attrs["data-effect"], if *allowed { "allow" } else { "deny" }, "{origin} → {entry} → {service}");
        let key = (origin.clone(), entry.clone(), service.clone());
        assert_eq!(p.attrs.get("data-edge"), gates[&key].as_ref(), "{origin} → {entry} → {service}: data-edge");
        for n in p.attrs["data-nodes"].split(' ') {
            assert!(
                dom.contains(&format!(" id=\"{}\"", n.replace('&', "&amp;").replace('"', "&quot;"))),
                "node {n} exists"
            );
        }
        assert!(!p.title.is_empty(), "{origin} → {entry} → {service} has hover text");
        if !allowed {
            assert!(p.title.contains("refused at "), "{}", p.title);
        }
    }
    let nodes = elements(&dom, "g");
    for d in decisions {
        for (col, key) in [("origin", "origin"), ("service", "service")] {
            let want = format!("{col}-{}", d[key].as_str().unwrap());
            assert!(nodes.iter().any(|n| n.attrs.get("id") == Some(&want)), "node {want} exists");
        }
    }
    let rows = elements(&dom, "tr").into_iter().filter(|r| r.attrs.contains_key("data-effect")).count();
    assert_eq!(rows, decisions.len(), "one table row per decision");
    // Written by the page's script once it has counted the rows.
    assert!(dom.contains(&format!("{n} of {n} rows", n = decisions.len())), "the table filter ran");
    (dom, paths)
}

#[test]
fn shop_report_in_chromium() {
    let (dom, paths) = render_and_match_the_matrix("shop", &root().join("examples/shop"));
    for id in [
        "origin-internet",
        "origin-service:web",
        "entry-lb:shop-edge",
        "entry-api/default-url",
        "service-web",
        "service-api",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "node {id}");
    }

    // The storefront is public through its load balancer.
    let p = path(&paths, "internet", "lb:shop-edge", "web");
    assert_eq!(p.attrs["data-effect"], "allow");
    assert!(p.title.contains("allowed (HTTP 200) for 7 of 7"), "{}", p.title);

    // The API is internal: refused at ingress with a 404, and the hover says why.
    let p = path(&paths, "internet", "default-url", "api");
    assert_eq!(p.attrs["data-effect"], "deny");
    assert_eq!(p.attrs["data-allowed"], "0");
    assert!(p.title.contains("refused at ingress (HTTP 404)"), "{}", p.title);
    assert!(
        p.title.contains("ingress `internal` refuses requests from the internet [ingress.internal_only]"),
        "{}",
        p.title
    );

    // The internal load balancer does not exist from the internet: no HTTP response at all.
    let p = path(&paths, "internet", "lb:admin-ilb", "admin");
    assert_eq!(p.attrs["data-effect"], "deny");
    assert!(p.title.contains("refused at network (no HTTP response)"), "{}", p.title);

    // Some get through, the others are refused by IAM: drawn allowed, refusals on hover.
    let p = path(&paths, "vpc:shop-prod/shop-vpc", "lb:admin-ilb", "admin");
    assert_eq!((p.attrs["data-effect"].as_str(), p.attrs["data-allowed"].as_str()), ("allow", "2"));
    assert!(p.title.contains("user:alice@example.com, user:bob@example.com"), "{}", p.title);
    assert!(p.title.contains("refused at authorization (HTTP 403) for 1: anonymous"), "{}", p.title);
}

#[test]
fn insecure_report_in_chromium() {
    let (_, paths) = render_and_match_the_matrix("insecure", &root().join("examples/insecure"));
    // MOAT001: allUsers may invoke public-api, and its ingress is `all`.
    let p = path(&paths, "internet", "default-url", "public-api");
    assert_eq!(p.attrs["data-effect"], "allow");
    assert!(p.title.contains("allowed (HTTP 200)") && p.title.contains("anonymous"), "{}", p.title);
    // MOAT003: orders has no VPC egress, so its calls to the internal inventory get a 404.
    let p = path(&paths, "service:orders", "default-url", "inventory");
    assert_eq!(p.attrs["data-effect"], "deny");
    assert!(p.title.contains("refused at ingress (HTTP 404)"), "{}", p.title);
    assert!(p.title.contains("[ingress.internal_only] services/inventory.yaml:7"), "{}", p.title);
}

#[test]
fn edge_policy_report_in_chromium_marks_closed_and_depending_entries() {
    let fixture = root().join("crates/moat/tests/fixtures/edge_matrix");
    let (dom, paths) = render_and_match_the_matrix("edge", &fixture);
    // Closed: refused at the edge for every principal, and the hover says by what.
    let p = path(&paths, "internet", "lb:closed", "web");
    assert_eq!((p.attrs["data-effect"].as_str(), p.attrs["data-edge"].as_str()), ("deny", "closed"));
    assert!(p.title.contains("closed: the security policy of lb:closed refuses every request"), "{}", p.title);
    assert!(p.title.contains("refused at edge (HTTP 403) for all 2 principals"), "{}", p.title);
    assert!(p.title.contains("[edge.default_rule] armor/closed.json:6"), "{}", p.title);
    // Depends: drawn as without the policy, the rules that decide on hover.
    let p = path(&paths, "internet", "lb:partner", "web");
    assert_eq!((p.attrs["data-effect"].as_str(), p.attrs["data-edge"].as_str()), ("allow", "depends"));
    assert!(p.title.contains("? the security policy of lb:partner refuses some requests"), "{}", p.title);
    assert!(
        p.title.contains("? rule 1000 (allow) depends on request attributes: origin.ip (--source-ip)"),
        "{}",
        p.title
    );
    assert_eq!(path(&paths, "internet", "lb:open", "web").attrs["data-edge"], "open");
    assert!(!path(&paths, "internet", "default-url", "web").attrs.contains_key("data-edge"));
    let rows = elements(&dom, "tr");
    let closed = rows.iter().filter(|r| r.attrs.get("data-edge").map(String::as_str) == Some("closed")).count();
    let on_closed = rows.iter().filter(|r| r.attrs.get("data-entry").map(String::as_str) == Some("lb:closed")).count();
    assert!(closed > 0 && closed == on_closed, "every table row through lb:closed has data-edge=closed");
}

#[test]
fn terraform_plan_report_in_chromium_lists_the_values_unknown_until_apply() {
    let plan = root().join("crates/moat/tests/fixtures/terraform/unknowns.plan.json");
    let (dom, _) = render_and_match_the_matrix("plan", &plan);
    assert!(dom.contains("<ul id=\"moat-unknowns\">"), "unknowns listed");
    assert!(dom.contains("<code>google_cloud_run_v2_service.orders.ingress</code>"), "unknowns listed");
}

/// Regression guard for HTML injection: names and reason messages come from config files, and
/// a page built by string concatenation would run them.
#[test]
fn hostile_names_in_the_project_stay_inert_text() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html_report/hostile-project");
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root().join("examples/shop"), &dir);
    let domain = r#"<img src=x onerror=document.body.dataset.pwned=1>"x'.example.com"#;
    let principal = "user:x</title><script>document.body.dataset.pwned=2</script>@example.com";
    let yaml = std::fs::read_to_string(dir.join("moat.yaml")).unwrap();
    let yaml = yaml.replace("  - domain: status.example.com", &format!("  - domain: '{}'", domain.replace('\'', "''")));
    assert!(yaml.contains("<img"), "the domain mapping was replaced");
    std::fs::write(dir.join("moat.yaml"), yaml).unwrap();
    let iam = std::fs::read_to_string(dir.join("iam/status.json")).unwrap();
    let iam = iam
        .replace("\"group:shop-admins@example.com\",", &format!("\"group:shop-admins@example.com\", \"{principal}\","));
    std::fs::write(dir.join("iam/status.json"), iam).unwrap();

    let html = moat_explain(&dir, &["--format", "html"]);
    assert!(!html.contains("<script>document") && !html.contains("<img src=x"), "escaped in the bytes");
    let dom = dump_dom("hostile", &html);
    assert!(!dom.contains("pwned=\""), "injected markup ran");
    assert!(!dom.contains("<img") && dom.matches("<script").count() == 1, "only the page's own script element");
    let paths: Vec<Element> =
        elements(&dom, "path").into_iter().filter(|p| p.attrs.contains_key("data-effect")).collect();
    // The names arrive intact, as text and attribute values.
    let p = path(&paths, "internet", &format!("domain:{domain}"), "status");
    assert!(p.title.contains(principal), "{}", p.title);
    assert!(dom.contains("user:x&lt;/title&gt;&lt;script&gt;document.body.dataset.pwned=2&lt;/script&gt;@example.com"));
}

/// What a reader sees on hover, line by line, for one service (the page's bytes; no browser).
#[test]
fn hover_text_for_one_service() {
    let html = moat_explain(&root().join("examples/shop"), &["--service", "admin", "--format", "html"]);
    let titles: Vec<String> = elements(&html, "path").into_iter().map(|p| p.title).collect();
    assert!(!titles.is_empty());
    insta::assert_snapshot!(titles.join("\n\n"));
}

#[test]
fn the_same_project_gives_the_same_bytes() {
    let shop = root().join("examples/shop");
    assert_eq!(moat_explain(&shop, &["--format", "html"]), moat_explain(&shop, &["--format", "html"]));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

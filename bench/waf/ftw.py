#!/usr/bin/env python3
"""WAF scoring runner: the same requests, the same scoring, for every engine.

    ftw.py crs      --engine NAME --kind modsec|moat --port P --log FILE [--tests DIR] --out FILE.json
    ftw.py detect   --engine NAME --kind modsec|moat --port P --log FILE --label L [--data DIR] [--tests DIR] --out FILE.json
    ftw.py report   FILE.json...            side-by-side tables (markdown) of whatever results are given
    ftw.py policy   crs|detect-N|block-N    a moat armor policy (Cloud Armor JSON) on stdout
    ftw.py probe    --port P [--mix mixed.tsv]  each throughput request once: benign 2xx, attacks 403?

Engines are black boxes on 127.0.0.1:PORT that write one JSON record per request to a log:

  modsec  libmodsecurity's serial JSON audit log (SecAuditLogFormat JSON); the fired rule ids
          are transaction.messages[].details.ruleId.
  moat    moat's STATE/decisions.jsonl; the fired signatures are the record's `waf_signatures`
          (`owasp-crs-v030301-id942100-sqli`), the rule id is the 6 digits after `id`.

Correlation (why it is robust): requests are sent one at a time, and after each one (or each
batch, for the detection corpus) the runner sends a *marker* request and reads the log until the
marker's own record shows up. Every record written between two markers belongs to the request(s)
sent between them, in order. Nothing is added to the test requests themselves (no correlation
header), so the engines see exactly the bytes the test file describes. Markers:

  modsec  GET /__ftw_marker__/<uuid>  (its record is recognised by the uuid in request.uri)
  moat    GET / with Host: marker.ftw.localhost, a second load balancer of the bench project
          without a security policy (its record has entry == "lb:marker"; records carry no path)

With nginx, this needs worker_processes 1 (score.sh does that): a single worker finishes the
log phase of one request before it accepts the next connection.

Stdlib only, plus PyYAML (Debian: python3-yaml) for the CRS test files.
"""

import argparse
import base64
import glob
import json
import os
import re
import select
import socket
import sys
import time
import uuid
from urllib.parse import parse_qsl, unquote, urlencode

# The CRS files behind Cloud Armor's preconfigured sets (spec/armor.md §4.1).
FAMILIES = ["911", "913", "921", "930", "931", "932", "933", "934", "941", "942", "943", "944"]
FAMILY_SET = {
    "911": "methodenforcement", "913": "scannerdetection", "921": "protocolattack", "930": "lfi",
    "931": "rfi", "932": "rce", "933": "php", "934": "nodejs", "941": "xss", "942": "sqli",
    "943": "sessionfixation", "944": "java",
}
DEFAULT_TESTS = "/work/shared/corpora/crs-v3.3.4/tests/regression/tests"
DEFAULT_DATA = "/work/shared/corpora/libinjection/data"
SOCKET_TIMEOUT = 5.0
MARKER_HOST = "marker.ftw.localhost"
UA = "OWASP CRS test agent"


# --- transport --------------------------------------------------------------------------------

def send_raw(port, payload, timeout=SOCKET_TIMEOUT):
    """Sends bytes on a fresh connection and reads one response.

    Returns (status, error): status is the response's status code (None if there was no
    parsable response), error is a string when the connection failed or no response came.
    Reads until the response is complete (Content-Length / chunked end / close), or the server
    went quiet for 200 ms after the headers.
    """
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return None, f"connect: {e}"
    try:
        sock.sendall(payload)
        buf = b""
        deadline = time.monotonic() + timeout
        head_end = -1
        need = None
        while True:
            wait = deadline - time.monotonic()
            if head_end >= 0:
                wait = min(wait, 0.2)
            if wait <= 0:
                break
            r, _, _ = select.select([sock], [], [], wait)
            if not r:
                break
            try:
                chunk = sock.recv(65536)
            except OSError as e:
                if not buf:
                    return None, f"recv: {e}"
                break
            if not chunk:
                break
            buf += chunk
            if head_end < 0:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = buf[:head_end].decode("latin-1").lower()
                    m = re.search(r"\ncontent-length:\s*(\d+)", head)
                    if m:
                        need = head_end + 4 + int(m.group(1))
                    elif "transfer-encoding: chunked" not in head:
                        need = head_end + 4 if head.split(" ", 2)[1:2] in (["204"], ["304"]) else None
            if need is not None and len(buf) >= need:
                break
            if head_end >= 0 and b"transfer-encoding: chunked" in buf[:head_end].lower() and buf.endswith(b"0\r\n\r\n"):
                break
        if not buf:
            return None, "no response"
        m = re.match(rb"HTTP/\d(?:\.\d)? (\d{3})", buf)
        if not m:
            return None, "unparsable response"
        return int(m.group(1)), None
    except OSError as e:
        return None, f"send: {e}"
    finally:
        try:
            sock.close()
        except OSError:
            pass


class KeepAlive:
    """One persistent HTTP/1.1 connection for the detection corpus (many small GETs)."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = b""

    def request(self, payload):
        for attempt in (0, 1):
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=SOCKET_TIMEOUT)
                self.buf = b""
            try:
                self.sock.sendall(payload)
                return self._read()
            except (OSError, ValueError):
                self.close()
                if attempt:
                    return None
        return None

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ValueError("closed")
        self.buf += chunk

    def _read(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        text = head.decode("latin-1")
        status = int(text.split(" ", 2)[1])
        low = text.lower()
        m = re.search(r"\ncontent-length:\s*(\d+)", low)
        if m:
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            self.buf = self.buf[n:]
        elif "transfer-encoding: chunked" in low:
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, rest = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    self._fill()
                    size_line, rest = self.buf.split(b"\r\n", 1)
                self.buf = rest[size + 2:]
                if size == 0:
                    break
        else:
            self.close()  # body until close: not expected here
        if "\nconnection: close" in low:
            self.close()
        return status


# --- engines and their logs -------------------------------------------------------------------

class Engine:
    def __init__(self, name, kind, port, log_path):
        if kind not in ("modsec", "moat"):
            raise SystemExit(f"unknown engine kind {kind!r}")
        self.name, self.kind, self.port, self.log_path = name, kind, port, log_path
        self.pos = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        self.pending = b""
        self.records_seen = 0
        self.records_with_waf = 0

    # The log, read incrementally: one JSON record per line (both engines write JSON lines);
    # an incomplete last line stays pending until its newline arrives.
    def _read_new(self):
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        self.pos += len(data)
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        out = []
        for line in lines:
            if not line.strip():
                continue
            try:
                out.append(json.loads(line.decode("utf-8", errors="replace")))
            except json.JSONDecodeError:
                sys.stderr.write(f"{self.name}: skipped an unparsable log line ({len(line)} bytes)\n")
        return out

    def marker(self):
        token = uuid.uuid4().hex
        if self.kind == "modsec":
            req = f"GET /__ftw_marker__/{token} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {UA}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        else:
            req = f"GET /__ftw_marker__/{token} HTTP/1.1\r\nHost: {MARKER_HOST}\r\nUser-Agent: {UA}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        return token, req.encode()

    def is_marker(self, rec, token):
        if self.kind == "modsec":
            uri = ((rec.get("transaction") or {}).get("request") or {}).get("uri") or ""
            return token in uri
        return rec.get("entry") == "lb:marker"

    def ids(self, rec):
        if self.kind == "modsec":
            msgs = (rec.get("transaction") or {}).get("messages") or []
            return [str((m.get("details") or {}).get("ruleId", "")) for m in msgs if (m.get("details") or {}).get("ruleId")]
        sigs = rec.get("waf_signatures")
        self.records_seen += 1
        if sigs is None:
            return []
        self.records_with_waf += 1
        out = []
        for s in sigs:
            m = re.search(r"id(\d{6})", s)
            if m:
                out.append(m.group(1))
        return out

    def uri(self, rec):
        if self.kind == "modsec":
            return ((rec.get("transaction") or {}).get("request") or {}).get("uri")
        return None  # moat's records carry no path

    def sync(self, timeout=10.0):
        """Sends a marker and returns the records written before it (since the last sync)."""
        token, req = self.marker()
        status, err = send_raw(self.port, req)
        if err:
            raise RuntimeError(f"{self.name}: marker request failed: {err}")
        got = []
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            for rec in self._read_new():
                if self.is_marker(rec, token):
                    return got
                got.append(rec)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the marker's record never reached {self.log_path}")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)


# --- CRS (py-ftw v3.3) test files ----------------------------------------------------------------

def load_yaml(path):
    import yaml
    with open(path, "rb") as f:
        raw = f.read()
    return yaml.safe_load(raw.decode("utf-8", errors="surrogateescape"))


def to_bytes(s):
    """Bytes of a YAML string: code points up to U+00FF are bytes (the tests write "\\xac" for
    the byte 0xAC); anything wider is UTF-8."""
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8", errors="surrogateescape")


def build_request(inp):
    """The bytes py-ftw (1.x) sends for a stage input, including its 'magic'.

    - raw_request: sent as written (YAML escapes already applied; code points <= U+00FF are bytes).
    - encoded_request: base64-decoded and sent as is.
    - otherwise `METHOD URI VERSION`, the headers in file order, then data. Unless stop_magic:
      data with no Content-Type gets `application/x-www-form-urlencoded`; such form data that is
      not already URL-encoded is re-encoded (parse_qsl + urlencode, as py-ftw does); a missing
      Content-Length is added. A list `data` is joined with CRLF.
    """
    if inp.get("encoded_request") is not None:
        return base64.b64decode(inp["encoded_request"]), "encoded"
    if inp.get("raw_request") is not None:
        return to_bytes(inp["raw_request"]), "raw"
    method = str(inp.get("method", "GET"))
    uri = str(inp.get("uri", "/"))
    version = inp.get("version", "HTTP/1.1")
    version = "" if version is None else str(version)
    headers = dict(inp.get("headers") or {})
    stop_magic = bool(inp.get("stop_magic", False))
    data = inp.get("data", "")
    if data is None:
        data = ""
    if isinstance(data, list):
        data = "\r\n".join(str(d) for d in data)
    data = str(data)
    if data != "":
        if "Content-Type" not in headers and not stop_magic:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if headers.get("Content-Type") == "application/x-www-form-urlencoded" and not stop_magic:
            if unquote(data) == data:
                qs = parse_qsl(data)
                if qs:
                    data = urlencode(qs)
    charset = "utf-8"
    ct = str(headers.get("Content-Type", ""))
    m = re.search(r";\s?charset=([^;\s]*)", ct)
    if m and not stop_magic:
        charset = m.group(1).replace("-", "_").lower()
    try:
        body = data.encode(charset)
    except (LookupError, UnicodeError):
        body = to_bytes(data)
    if data != "" and "Content-Length" not in headers and not stop_magic:
        headers["Content-Length"] = len(body)
    head = f"{method} {uri} {version}\r\n"
    for k, v in headers.items():
        head += f"{k}: {v}\r\n"
    head += "\r\n"
    return to_bytes(head) + body, "plain"


def id_text(ids):
    """What the expectations are matched against: one `id "NNNNNN"` per fired rule, as the
    error log lines py-ftw searched contain them."""
    return "\n".join(f'id "{i}"' for i in ids)


def stage_verdict(out, ids, status, err):
    """(scored, passed, why) for one stage's output expectations.

    Scored expectations: log_contains (regex, must match the fired-id text), no_log_contains
    (regex, must not match), expect_error (the target must fail the connection / give no
    parsable response). A stage with only `status` is not scored: the regression runs use
    DetectionOnly / preview, so statuses say nothing about detection.
    """
    why = []
    scored = False
    text = id_text(ids)
    if out.get("expect_error"):
        scored = True
        if err is None:
            why.append(f"expected a connection error, got status {status}")
    if out.get("log_contains") is not None:
        scored = True
        if not re.search(str(out["log_contains"]), text):
            why.append(f"want {out['log_contains']}")
    if out.get("no_log_contains") is not None:
        scored = True
        if re.search(str(out["no_log_contains"]), text):
            why.append(f"not {out['no_log_contains']}")
    if not out.get("expect_error") and err is not None and scored:
        why.append(f"transport: {err}")
    return scored, not why, "; ".join(why)


def family_dirs(tests_dir, families):
    out = []
    for fam in families:
        ds = sorted(glob.glob(os.path.join(tests_dir, f"REQUEST-{fam}-*")))
        out.extend((fam, d) for d in ds if os.path.isdir(d))
    return out


def iter_tests(tests_dir, families):
    """(family, file, test_title, enabled, stages[(input, output)])"""
    for fam, d in family_dirs(tests_dir, families):
        for f in sorted(glob.glob(os.path.join(d, "*.yaml"))):
            doc = load_yaml(f) or {}
            enabled = (doc.get("meta") or {}).get("enabled", True)
            for t in doc.get("tests") or []:
                stages = []
                for st in t.get("stages") or []:
                    st = st.get("stage", st)
                    stages.append((st.get("input") or {}, st.get("output") or {}))
                yield fam, os.path.basename(f), t.get("test_title", "?"), enabled and t.get("enabled", True), stages


def cmd_crs(a):
    eng = Engine(a.engine, a.kind, a.port, a.log)
    families = a.families.split(",")
    per = {f: {"pass": 0, "fail": 0, "skip": 0} for f in families}
    failures = []
    no_record = []  # stages the engine wrote no record for (refused before its WAF ran)
    eng.sync()  # drain whatever came before
    t0 = time.monotonic()
    n_req = 0
    for fam, fname, title, enabled, stages in iter_tests(a.tests, families):
        if not enabled:
            per[fam]["skip"] += 1
            continue
        ok, scored_any, whys = True, False, []
        for idx, (inp, out) in enumerate(stages):
            payload, mode = build_request(inp)
            status, err = send_raw(a.port, payload)
            recs = eng.sync()
            n_req += 1
            ids = sorted({i for r in recs for i in eng.ids(r)})
            if not recs:
                no_record.append(f"{title}/{idx + 1} ({'status ' + str(status) if status else err})")
            if len(recs) > 1:
                sys.stderr.write(f"{eng.name}: {title} stage {idx + 1}: {len(recs)} log records (ids merged)\n")
            scored, good, why = stage_verdict(out, ids, status, err)
            if not scored:
                continue
            scored_any = True
            if not good:
                ok = False
                whys.append({"stage": idx + 1, "mode": mode, "why": why, "status": status,
                             "fired": [i for i in ids if i[:3] in FAMILY_SET or i[:3] in ("920", "922", "949")]})
        if not scored_any:
            per[fam]["skip"] += 1
        elif ok:
            per[fam]["pass"] += 1
        else:
            per[fam]["fail"] += 1
            failures.append({"test": title, "file": fname, "stages": whys})
    result = {"kind": "crs", "engine": a.engine, "profile": a.profile, "tests_dir": a.tests,
              "families": per, "failures": failures, "requests": n_req, "no_record": no_record,
              "seconds": round(time.monotonic() - t0, 1)}
    if eng.kind == "moat":
        result["records_with_waf_signatures"] = [eng.records_with_waf, eng.records_seen]
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    tot = {k: sum(v[k] for v in per.values()) for k in ("pass", "fail", "skip")}
    sys.stderr.write(f"{eng.name} crs: pass {tot['pass']} fail {tot['fail']} skipped {tot['skip']} "
                     f"({n_req} requests, {result['seconds']} s)\n")
    if eng.kind == "moat" and eng.records_seen and not eng.records_with_waf:
        sys.stderr.write(f"{eng.name}: no decision record carried `waf_signatures`: this moat has no WAF hook\n")


# --- detection / false positives ---------------------------------------------------------------

# RFC 3986 unreserved + reserved characters, and `%` (the lines' own escapes are kept).
SAFE = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?[]@!$&'()*+,;=%")


def as_query(line):
    """A corpus line as the value of `q`. The lines are mostly URL-encoded already; every byte
    that is not allowed in a URI (controls, space, non-ASCII, `"<>\\^`{|}` and `#`) is
    %-encoded, the rest (including existing %XX escapes) is left alone. After URL-decoding,
    which is what both WAFs inspect, the value is the line. Strict HTTP parsers (hyper, moat's)
    refuse those raw characters with 400; nginx accepts them: encoding them keeps the
    comparison about detection, not about request-line parsing."""
    return "".join(chr(b) if b in SAFE else "%%%02X" % b for b in line)


def corpus_lines(path):
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\r\n")
            if not line.strip() or line.lstrip().startswith(b"#"):
                continue
            yield line


def detect_batch(eng, ka, reqs, uris):
    """Sends a batch on one keep-alive connection, then a marker; returns one id list per
    request. Falls back to one request per marker if the records do not line up."""
    for r in reqs:
        ka.request(r)
    ka.close()
    recs = eng.sync()
    aligned = len(recs) == len(reqs)
    if aligned and eng.kind == "modsec":
        aligned = all(eng.uri(rec) == u for rec, u in zip(recs, uris))
    if aligned:
        return [eng.ids(rec) for rec in recs]
    sys.stderr.write(f"{eng.name}: batch of {len(reqs)} gave {len(recs)} records; resending one by one\n")
    out = []
    for r in reqs:
        send_raw(eng.port, r)
        rs = eng.sync()
        out.append(sorted({i for rec in rs for i in eng.ids(rec)}))
    return out


def cmd_detect(a):
    eng = Engine(a.engine, a.kind, a.port, a.log)
    eng.sync()
    groups = {}  # group -> list of (file, bytes request, uri)
    files = {
        "sqli": sorted(glob.glob(os.path.join(a.data, "sqli-*.txt"))),
        "xss": sorted(glob.glob(os.path.join(a.data, "xss-*.txt"))),
        "false_positives": [os.path.join(a.data, "false_positives.txt")],
    }
    for g, fs in files.items():
        for path in fs:
            if not os.path.exists(path):
                continue
            for line in corpus_lines(path):
                uri = "/?q=" + as_query(line)
                req = (f"GET {uri} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {UA}\r\n"
                       f"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\r\n").encode("latin-1")
                groups.setdefault(g, []).append((os.path.basename(path), req, uri))
    t0 = time.monotonic()
    result = {"kind": "detect", "engine": a.engine, "profile": a.label, "groups": {}, "files": {}}
    ka = KeepAlive(a.port)
    for g, items in groups.items():
        hits = 0
        for i in range(0, len(items), a.batch):
            chunk = items[i:i + a.batch]
            ids_list = detect_batch(eng, ka, [c[1] for c in chunk], [c[2] for c in chunk])
            for (fname, _, _), ids in zip(chunk, ids_list):
                hit = any(x[:3] in ("941", "942") for x in ids)
                hits += hit
                fs = result["files"].setdefault(fname, [0, 0])
                fs[0] += hit
                fs[1] += 1
        result["groups"][g] = [hits, len(items)]
        sys.stderr.write(f"{eng.name} {a.label}: {g} {hits}/{len(items)}\n")
    # The CRS tests' no_log_contains stages (of the Cloud Armor families) as a benign set:
    # `any` = some 941/942 rule fired; `named` = the rule the stage says must not fire did.
    if a.tests and os.path.isdir(a.tests):
        any_hit = named_hit = total = 0
        for fam, fname, title, enabled, stages in iter_tests(a.tests, FAMILIES):
            if not enabled:
                continue
            for inp, out in stages:
                if out.get("no_log_contains") is None or out.get("log_contains") is not None:
                    continue
                payload, _ = build_request(inp)
                status, err = send_raw(a.port, payload)
                recs = eng.sync()
                ids = sorted({i for r in recs for i in eng.ids(r)})
                total += 1
                any_hit += any(x[:3] in ("941", "942") for x in ids)
                named_hit += bool(re.search(str(out["no_log_contains"]), id_text(ids)))
        result["groups"]["crs_no_log_contains"] = [any_hit, total]
        result["crs_no_log_contains_named"] = [named_hit, total]
        sys.stderr.write(f"{eng.name} {a.label}: crs no_log_contains stages: any 941/942 {any_hit}/{total}, named id {named_hit}/{total}\n")
    result["seconds"] = round(time.monotonic() - t0, 1)
    if eng.kind == "moat":
        result["records_with_waf_signatures"] = [eng.records_with_waf, eng.records_seen]
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


# --- moat policies -----------------------------------------------------------------------------

def waf_rule(set_name, sensitivity, priority, preview):
    return {
        "description": f"{set_name} at sensitivity {sensitivity}" + (" (preview: evaluated, recorded, not enforced)" if preview else ""),
        "action": "deny(403)",
        "priority": priority,
        "preview": preview,
        "match": {"expr": {"expression": f"evaluatePreconfiguredWaf('{set_name}-v33-stable', {{'sensitivity': {sensitivity}}})"}},
    }


def cmd_policy(a):
    """crs: all 12 sets at sensitivity 4, each a preview rule (so every set is evaluated for
    every request); detect-N: sqli and xss at N, preview; block-N: sqli and xss at N, enforced."""
    p = a.profile
    if p == "crs":
        sets = [FAMILY_SET[f] for f in FAMILIES]
        if a.sets:
            want = a.sets.split(",")
            unknown = [x for x in want if x not in sets]
            if unknown:
                raise SystemExit(f"unknown set(s) {unknown}; sets are {sets}")
            sets = [x for x in sets if x in want]
        rules = [waf_rule(name, 4, 1000 + 10 * i, True) for i, name in enumerate(sets)]
    elif p.startswith("detect-"):
        n = int(p.split("-")[1])
        rules = [waf_rule("sqli", n, 1000, True), waf_rule("xss", n, 1010, True)]
    elif p.startswith("block-"):
        n = int(p.split("-")[1])
        rules = [waf_rule("sqli", n, 1000, False), waf_rule("xss", n, 1010, False)]
    else:
        raise SystemExit(f"unknown policy profile {p}")
    rules.append({"description": "default rule", "action": "allow", "priority": 2147483647,
                  "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}})
    # JSON parsing on, as ModSecurity's recommended config (Debian's /etc/nginx/modsecurity.conf,
    # which the nginx target includes) turns on its JSON body processor: both engines then
    # inspect JSON values, not the JSON text.
    print(json.dumps({"name": "waf", "type": "CLOUD_ARMOR", "rules": rules,
                      "advancedOptionsConfig": {"jsonParsing": "STANDARD"}}, indent=2))


# --- the throughput mix, one request at a time ----------------------------------------------------

def cmd_probe(a):
    """Sends each request of mixed.tsv once and prints `kind status method path`; exits 1 when
    a benign request is refused or an attack is let through (so a throughput run compares
    engines that do the same thing)."""
    bad = 0
    for line in open(a.mix, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        kind, method, path, extra, body = line.split("\t")
        head = (f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
                "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
                "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
                "Accept-Language: en-US,en;q=0.5\r\nConnection: close\r\n")
        if extra != "-":
            head += extra + "\r\n"
        data = b""
        if body != "-":
            data = body.encode()
            head += f"Content-Length: {len(data)}\r\n"
        status, err = send_raw(a.port, (head + "\r\n").encode() + data)
        want_block = kind == "attack"
        ok = status is not None and ((status == 403) if want_block else (200 <= status < 300))
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {kind:6} {status if status is not None else err} {method} {path}")
    sys.exit(1 if bad else 0)


# --- report ------------------------------------------------------------------------------------

def cmd_report(a):
    results = []
    for p in a.files:
        with open(p) as f:
            results.append(json.load(f))
    crs = [r for r in results if r["kind"] == "crs"]
    det = [r for r in results if r["kind"] == "detect"]
    if crs:
        print("### CRS v3.3.4 regression tests (Cloud Armor families), pass / fail / skipped\n")
        cols = [f"{r['engine']} ({r['profile']})" for r in crs]
        print("| family | set | " + " | ".join(cols) + " |")
        print("|---|---|" + "---|" * len(cols))
        tot = [[0, 0, 0] for _ in crs]
        for fam in FAMILIES:
            cells = []
            for k, r in enumerate(crs):
                v = r["families"].get(fam)
                if v is None:
                    cells.append("-")
                    continue
                tot[k][0] += v["pass"]; tot[k][1] += v["fail"]; tot[k][2] += v["skip"]
                cells.append(f"{v['pass']} / {v['fail']} / {v['skip']}")
            print(f"| {fam} | {FAMILY_SET[fam]} | " + " | ".join(cells) + " |")
        print("| **total** | | " + " | ".join(f"**{p} / {f} / {s}**" for p, f, s in tot) + " |")
        for r in crs:
            extra = ""
            if "records_with_waf_signatures" in r:
                w, n = r["records_with_waf_signatures"]
                extra = f"; records carrying waf_signatures: {w}/{n}"
                if n and not w:
                    extra += " (**no WAF hook in this moat: every 'want' fails**)"
            nr = r.get("no_record") or []
            if nr:
                extra += f"; {len(nr)} requests left no log record (refused before the WAF ran): " + ", ".join(nr[:12]) + (" ..." if len(nr) > 12 else "")
            print(f"\n{r['engine']}: {r['requests']} requests in {r['seconds']} s{extra}")
        print()
    if det:
        print("### Detection (any 941/942 id fired) / total\n")
        cols = [f"{r['engine']} {r['profile']}" for r in det]
        print("| set | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        names = []
        for r in det:
            for g in r["groups"]:
                if g not in names:
                    names.append(g)
        label = {"sqli": "sqli-*.txt (attack)", "xss": "xss-*.txt (attack)",
                 "false_positives": "false_positives.txt (benign)",
                 "crs_no_log_contains": "CRS no_log_contains stages (benign)"}
        for g in names:
            cells = []
            for r in det:
                v = r["groups"].get(g)
                cells.append("-" if v is None else f"{v[0]}/{v[1]} ({100.0 * v[0] / max(v[1], 1):.1f} %)")
            print(f"| {label.get(g, g)} | " + " | ".join(cells) + " |")
        if any("crs_no_log_contains_named" in r for r in det):
            cells = []
            for r in det:
                v = r.get("crs_no_log_contains_named")
                cells.append("-" if v is None else f"{v[0]}/{v[1]}")
            print("| CRS no_log_contains stages: the named id fired | " + " | ".join(cells) + " |")
        for r in det:
            extra = ""
            if "records_with_waf_signatures" in r:
                w, n = r["records_with_waf_signatures"]
                extra = f"; records carrying waf_signatures: {w}/{n}"
            print(f"\n{r['engine']} {r['profile']}: {r['seconds']} s{extra}")
        print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("crs", "detect"):
        p = sub.add_parser(name)
        p.add_argument("--engine", required=True)
        p.add_argument("--kind", required=True, choices=["modsec", "moat"])
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--log", required=True)
        p.add_argument("--tests", default=os.environ.get("CRS_TESTS", DEFAULT_TESTS))
        p.add_argument("--out", required=True)
    sub.choices["crs"].add_argument("--families", default=",".join(FAMILIES))
    sub.choices["crs"].add_argument("--profile", default="PL4 / sensitivity 4")
    sub.choices["detect"].add_argument("--label", required=True)
    sub.choices["detect"].add_argument("--data", default=os.environ.get("LIBINJECTION_DATA", DEFAULT_DATA))
    sub.choices["detect"].add_argument("--batch", type=int, default=100)
    p = sub.add_parser("report")
    p.add_argument("files", nargs="+")
    p = sub.add_parser("probe")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mix", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "mixed.tsv"))
    p = sub.add_parser("policy")
    p.add_argument("profile")
    p.add_argument("--sets", default=os.environ.get("MOAT_CRS_SETS", ""),
                   help="crs profile: only these sets (comma-separated, e.g. sqli,xss); default all 12")
    a = ap.parse_args()
    {"crs": cmd_crs, "detect": cmd_detect, "report": cmd_report, "policy": cmd_policy, "probe": cmd_probe}[a.cmd](a)


if __name__ == "__main__":
    main()

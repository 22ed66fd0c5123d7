//! Issue 14: the hostile-caller matrix, generated from the served OpenAPI
//! document (SPEC §6: "a token never sees another organization's objects:
//! they answer 404, exactly as if they did not exist ... wherever an id
//! appears — path, query filter or request body").
//!
//! Every documented operation is tried by every hostile caller (no token, a
//! bad token, another organization's write token, the same organization's
//! read token, a workspace-narrowed token, a platform read token), with every
//! id the caller must not see put, one at a time, in every place of the
//! operation that takes an id of that kind (path, query, body). Three
//! oracles judge the answers:
//!
//! - **differential**: the same request with a fresh id of the same shape that
//!   exists nowhere must get the same answer (status, problem code, body with
//!   the tried id and minted ids blanked);
//! - **leak**: no answer holds an id or a secret text of the victim, other than
//!   the id the request itself named;
//! - **state**: the victim's state, read through every documented `GET`
//!   with the victim's ids, is the same before and after each write operation
//!   of each caller.
//!
//! Nothing here names a route: a route added to the document is covered by
//! the next run. Every failing combination is collected and listed at the end.

mod common;

use capacity_api::auth::generate_secret;
use capacity_store::{Access, TokenKind};
use common::*;
use regex::Regex;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The victim organization, its two workspaces, and the attacker.
const V_ORG: &str = "ORG-26-000101";
const V1: &str = "WS-26-000111";
const V2: &str = "WS-26-000122";
const A_ORG: &str = "ORG-26-000202";
const A_WS: &str = "WS-26-000211";
/// Service lines (registered by the platform when their allocations are made).
const V1_LINE: &str = "LIN-26-000131";
const V1_LINE_COMPUTE: &str = "LIN-26-000132";
const V2_LINE: &str = "LIN-26-000141";
const A_LINE: &str = "LIN-26-000231";

/// Operational routes outside the API surface; they show no tenant data.
/// (`/metrics` is not skipped: it is checked for leaks like every answer.)
const SKIPPED: [&str; 5] = ["/", "/docs", "/openapi.json", "/healthz", "/readyz"];
const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// Which part of the victim a hidden item belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Group {
    V1,
    V2,
    /// The organization as a whole (its id, its webhook endpoint).
    Org,
}

/// Something of the victim's: an id of a kind (`CAP`, `WS`, …) or a text
/// (`TEXT`) that must never appear in an answer to a caller who may not see it.
#[derive(Clone, Debug)]
struct Item {
    kind: String,
    value: String,
    group: Group,
}

/// What of the victim a caller may change: its state there is compared
/// before and after each of the caller's writes.
#[derive(Clone)]
struct Watch {
    groups: Vec<Group>,
    /// The organization-wide lists (read with the victim's own read token).
    org_wide: bool,
}

struct Caller {
    name: &'static str,
    token: Option<String>,
    /// The victim's items this caller must not see.
    hidden: Vec<Item>,
    /// The caller's own valid id per kind, to fill the other places.
    own: BTreeMap<String, String>,
    watch: Watch,
}

/// Where an id goes in a request.
#[derive(Clone, Debug)]
enum Loc {
    Path(String),
    Query(String),
    /// A JSON pointer into the body.
    Body(String),
}

#[derive(Clone, Debug)]
struct Slot {
    loc: Loc,
    kind: String,
    /// Optional query filters are left out of the base request.
    required: bool,
}

/// One documented operation, with its generated request template.
struct Op {
    method: String,
    path: String,
    /// Non-id query parameters sent on every request (required ones, and
    /// `limit` at its maximum so that a list shows everything).
    fixed_query: Vec<(String, String)>,
    /// Non-id path parameters.
    fixed_path: Vec<(String, String)>,
    body: Option<Value>,
    slots: Vec<Slot>,
}

impl Op {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A raw answer.
struct Reply {
    status: u16,
    content_type: String,
    www_authenticate: String,
    text: String,
}

impl Reply {
    fn code(&self) -> String {
        serde_json::from_str::<Value>(&self.text)
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default()
    }
    fn brief(&self) -> String {
        let code = self.code();
        let mut t: String = self.text.chars().take(220).collect();
        if t.len() < self.text.len() {
            t.push('…');
        }
        if code.is_empty() {
            format!("{} {t}", self.status)
        } else {
            format!("{} {code}: {t}", self.status)
        }
    }
}

async fn call(
    app: &TestApp,
    method: &str,
    path_and_query: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut req = app.client.request(
        method.parse().unwrap(),
        format!("{}{}", app.base, path_and_query),
    );
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path_and_query}: {e}"));
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header("content-type");
    let www_authenticate = header("www-authenticate");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    Reply {
        status,
        content_type,
        www_authenticate,
        text,
    }
}

// ---------------------------------------------------------------------------
// The generator: operations, id slots and valid example values, all read from
// the document.

fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        schema = &doc["components"]["schemas"][name];
    }
    schema
}

fn is_null_only(s: &Value) -> bool {
    s.get("type").and_then(Value::as_str) == Some("null")
}

/// The id kind a schema holds (`CAP` for `^CAP-[0-9]{2}-…`), looking through
/// `$ref` and `oneOf`/`anyOf` with `null`. Ids of other services that are not
/// tenant objects (`SCR-NNNNNN`) have no year part and are not kinds.
fn id_kind(doc: &Value, schema: &Value) -> Option<String> {
    static SHAPE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\^([A-Z]+)-\[0-9\]\{2\}-").unwrap());
    let s = resolve(doc, schema);
    if let Some(p) = s.get("pattern").and_then(Value::as_str)
        && let Some(c) = SHAPE.captures(p)
    {
        return Some(c[1].to_owned());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(vs) = s.get(key).and_then(Value::as_array) {
            for v in vs {
                if let Some(k) = id_kind(doc, v) {
                    return Some(k);
                }
            }
        }
    }
    None
}

/// The id kind of a parameter or property: by its schema, or, for a plain
/// string without a shape of its own, by its name (`workspace_id` → `WS`).
fn slot_kind(doc: &Value, name: &str, schema: &Value) -> Option<String> {
    if let Some(k) = id_kind(doc, schema) {
        return Some(k);
    }
    let s = resolve(doc, schema);
    let stringy = match s.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    if !stringy || s.get("enum").is_some() || s.get("pattern").is_some() {
        return None;
    }
    let kind = match name {
        "workspace_id" => "WS",
        "organization_id" => "ORG",
        "capacity_pool_id" | "pool_id" => "CAP",
        "allocation_id" => "ALLOC",
        "service_line_id" | "line_id" => "LIN",
        "demand_request_id" => "REQ",
        "event_id" => "EVT",
        "endpoint_id" | "webhook_endpoint_id" => "WHE",
        _ => return None,
    };
    Some(kind.to_owned())
}

/// A value matching a string pattern, from a few candidates.
fn string_for_pattern(pattern: &str) -> Option<String> {
    const CANDIDATES: [&str; 9] = [
        "matrix",
        "2026-07",
        "2026-Q3",
        "USD",
        "85.00",
        "2026-07-01T00:00:00Z",
        "https://hooks.example.com/matrix",
        "talent",
        "cab",
    ];
    let re = Regex::new(pattern).ok()?;
    CANDIDATES
        .iter()
        .find(|c| re.is_match(c))
        .map(|c| (*c).to_owned())
}

/// A valid example value for a schema; the id places found on the way are
/// pushed as body slots (their value is filled per request).
fn example(doc: &Value, schema: &Value, ptr: &str, slots: &mut Vec<Slot>) -> Value {
    let s = resolve(doc, schema);
    if let Some(kind) = id_kind(doc, s) {
        slots.push(Slot {
            loc: Loc::Body(ptr.to_owned()),
            kind,
            required: true,
        });
        return Value::String(String::new());
    }
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    if let Some(e) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return e.clone();
    }
    if let Some(e) = s
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .or_else(|| s.get("example"))
    {
        return e.clone();
    }
    if s.get("properties").is_some() || s.get("allOf").is_some() {
        return object_example(doc, s, ptr, slots);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(v) = s
            .get(key)
            .and_then(Value::as_array)
            .and_then(|vs| vs.iter().find(|v| !is_null_only(resolve(doc, v))))
        {
            return example(doc, v, ptr, slots);
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "",
    };
    match ty {
        "object" => object_example(doc, s, ptr, slots),
        "array" => {
            let item = example(doc, &s["items"], &format!("{ptr}/0"), slots);
            Value::Array(vec![item])
        }
        "string" => {
            if s.get("format").and_then(Value::as_str) == Some("date-time") {
                json!("2026-07-01T00:00:00Z")
            } else if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                json!(string_for_pattern(p).unwrap_or_else(|| "matrix".into()))
            } else {
                json!("matrix")
            }
        }
        "integer" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(1).max(1)),
        "number" => match s.get("minimum").and_then(Value::as_f64) {
            Some(m) if m > 0.0 => s["minimum"].clone(),
            _ => json!(1),
        },
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => json!("matrix"),
    }
}

/// An object with its required properties and every property that holds an
/// id; when that leaves no property that is not an id (a merge patch), also
/// the first optional one, so that a write really writes.
fn object_example(doc: &Value, s: &Value, ptr: &str, slots: &mut Vec<Slot>) -> Value {
    let mut props: Vec<(String, Value)> = Vec::new();
    let mut required: BTreeSet<String> = BTreeSet::new();
    let mut parts = vec![s];
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        parts.extend(all.iter().map(|p| resolve(doc, p)));
    }
    for part in parts {
        if let Some(ps) = part.get("properties").and_then(Value::as_object) {
            for (k, v) in ps {
                if !props.iter().any(|(n, _)| n == k) {
                    props.push((k.clone(), v.clone()));
                }
            }
        }
        if let Some(rs) = part.get("required").and_then(Value::as_array) {
            required.extend(rs.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    let mut chosen: Vec<&str> = props
        .iter()
        .filter(|(k, v)| {
            !is_null_only(resolve(doc, v))
                && (required.contains(k) || slot_kind(doc, k, v).is_some())
        })
        .map(|(k, _)| k.as_str())
        .collect();
    let has_plain = chosen
        .iter()
        .any(|k| slot_kind(doc, k, &props.iter().find(|(n, _)| n == k).unwrap().1).is_none());
    if !has_plain
        && let Some((k, _)) = props
            .iter()
            .find(|(k, v)| !chosen.contains(&k.as_str()) && !is_null_only(resolve(doc, v)))
    {
        chosen.push(k);
    }
    let mut out = Map::new();
    for (k, v) in &props {
        if !chosen.contains(&k.as_str()) {
            continue;
        }
        let here = format!("{ptr}/{k}");
        let value = match slot_kind(doc, k, v) {
            Some(kind) => {
                slots.push(Slot {
                    loc: Loc::Body(here),
                    kind,
                    required: true,
                });
                Value::String(String::new())
            }
            None => example(doc, v, &here, slots),
        };
        out.insert(k.clone(), value);
    }
    Value::Object(out)
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if SKIPPED.contains(&path.as_str()) {
            continue;
        }
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let mut o = Op {
                method: m.to_uppercase(),
                path: path.clone(),
                fixed_query: Vec::new(),
                fixed_path: Vec::new(),
                body: None,
                slots: Vec::new(),
            };
            let params = op
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for p in &params {
                let p = resolve(doc, p);
                let name = p["name"].as_str().unwrap().to_owned();
                let required = p.get("required").and_then(Value::as_bool) == Some(true);
                let schema = &p["schema"];
                match (p["in"].as_str(), slot_kind(doc, &name, schema)) {
                    (Some("path"), Some(kind)) => o.slots.push(Slot {
                        loc: Loc::Path(name),
                        kind,
                        required: true,
                    }),
                    (Some("query"), Some(kind)) => o.slots.push(Slot {
                        loc: Loc::Query(name),
                        kind,
                        required,
                    }),
                    (Some("path"), None) => {
                        let v = example(doc, schema, "", &mut Vec::new());
                        o.fixed_path.push((name, plain(&v)));
                    }
                    (Some("query"), None) if required => {
                        let v = example(doc, schema, "", &mut Vec::new());
                        o.fixed_query.push((name, plain(&v)));
                    }
                    (Some("query"), None) if name == "limit" => {
                        let max = resolve(doc, schema)
                            .get("maximum")
                            .cloned()
                            .unwrap_or(json!(100));
                        o.fixed_query.push((name, plain(&max)));
                    }
                    _ => {}
                }
            }
            if let Some(schema) = op
                .pointer("/requestBody/content/application~1json/schema")
                .cloned()
            {
                let mut slots = Vec::new();
                o.body = Some(example(doc, &schema, "", &mut slots));
                o.slots.extend(slots);
            }
            out.push(o);
        }
    }
    out
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Fresh ids of the same shape as the victim's, that exist nowhere.
static FRESH: AtomicU32 = AtomicU32::new(900_000);

fn fresh(kind: &str) -> String {
    format!("{kind}-26-{:06}", FRESH.fetch_add(1, Ordering::Relaxed))
}

/// The method and path (with query) and body of `op` with these slot values
/// (`None`: an optional query filter left out).
fn build(op: &Op, values: &[Option<String>]) -> (String, Option<Value>) {
    let mut path = op.path.clone();
    for (name, v) in &op.fixed_path {
        path = path.replace(&format!("{{{name}}}"), &enc(v));
    }
    let mut query: Vec<(String, String)> = op.fixed_query.clone();
    let mut body = op.body.clone();
    for (slot, v) in op.slots.iter().zip(values) {
        let Some(v) = v else { continue };
        match &slot.loc {
            Loc::Path(name) => path = path.replace(&format!("{{{name}}}"), &enc(v)),
            Loc::Query(name) => query.push((name.clone(), v.clone())),
            Loc::Body(ptr) => {
                if let Some(place) = body.as_mut().and_then(|b| b.pointer_mut(ptr)) {
                    *place = json!(v);
                }
            }
        }
    }
    if !query.is_empty() {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        path = format!("{path}?{}", q.join("&"));
    }
    (path, body)
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---------------------------------------------------------------------------
// The oracles.

/// Hidden items that occur in `text`, other than the one the request named.
fn leaks(text: &str, hidden: &[Item], echoed: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for item in hidden {
        if Some(item.value.as_str()) == echoed {
            continue;
        }
        let found = text.match_indices(&item.value).any(|(i, m)| {
            !text[i + m.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        });
        if found {
            out.push(item.value.clone());
        }
    }
    out
}

/// An answer with the tried id, minted ids, secrets and request ids blanked.
fn normalise(r: &Reply, tried: &str) -> String {
    static MINTED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(CAP|ALLOC|REQ|EVT|WHE)-[0-9]{2}-[0-9]{6,15}\b").unwrap());
    static SECRET: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"whsec_[A-Za-z0-9+/=_-]+").unwrap());
    let t = r.text.replace(tried, "{TRIED}");
    let t = MINTED.replace_all(&t, "{MINTED}");
    let t = SECRET.replace_all(&t, "{SECRET}");
    let body = match serde_json::from_str::<Value>(&t) {
        Ok(mut v) => {
            strip(&mut v, &["request_id"]);
            v.to_string()
        }
        Err(_) => t.into_owned(),
    };
    format!(
        "{} [{}] [{}] {body}",
        r.status, r.content_type, r.www_authenticate
    )
}

fn strip(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(m) => {
            for k in keys {
                m.remove(*k);
            }
            m.values_mut().for_each(|x| strip(x, keys));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, keys)),
        _ => {}
    }
}

struct Victim {
    items: Vec<Item>,
    platform_read: String,
    /// The victim's own unnarrowed token: it sees all of the victim.
    own_view: String,
}

impl Victim {
    fn ids(&self, kind: &str, groups: &[Group]) -> Vec<&str> {
        self.items
            .iter()
            .filter(|i| i.kind == kind && groups.contains(&i.group))
            .map(|i| i.value.as_str())
            .collect()
    }
}

/// The victim's state as every documented `GET` shows it: each id route with
/// (up to three of) the victim's ids of that kind, each list filtered by each
/// watched workspace, and, when watched, the organization-wide lists.
async fn snapshot(
    app: &TestApp,
    ops: &[Op],
    victim: &Victim,
    watch: &Watch,
) -> BTreeMap<String, String> {
    let mut calls: Vec<(String, String)> = Vec::new(); // (token, path)
    let both = |calls: &mut Vec<(String, String)>, path: String| {
        calls.push((victim.platform_read.clone(), path.clone()));
        calls.push((victim.own_view.clone(), path));
    };
    for op in ops.iter().filter(|o| o.method == "GET") {
        if op.slots.is_empty() && !op.path.starts_with("/v1/") {
            continue;
        }
        let required: Vec<usize> = (0..op.slots.len())
            .filter(|&i| op.slots[i].required)
            .collect();
        // The first required slot iterates over the victim's ids; the other
        // required slots take the victim's first id of their kind.
        let first_of = |kind: &str| {
            victim
                .ids(kind, &watch.groups)
                .first()
                .map(|s| s.to_string())
        };
        if let Some(&lead) = required.first() {
            for id in victim
                .ids(&op.slots[lead].kind, &watch.groups)
                .into_iter()
                .take(3)
            {
                let mut values: Vec<Option<String>> = vec![None; op.slots.len()];
                for &i in &required {
                    values[i] = first_of(&op.slots[i].kind);
                }
                values[lead] = Some(id.to_owned());
                if values
                    .iter()
                    .enumerate()
                    .all(|(i, v)| v.is_some() || !op.slots[i].required)
                {
                    both(&mut calls, build(op, &values).0);
                }
            }
        } else {
            // A list: once per watched workspace filter, and unfiltered for
            // the organization as a whole.
            for (i, slot) in op.slots.iter().enumerate() {
                if slot.kind == "WS" {
                    for ws in victim.ids("WS", &watch.groups) {
                        let mut values = vec![None; op.slots.len()];
                        values[i] = Some(ws.to_owned());
                        both(&mut calls, build(op, &values).0);
                    }
                }
                if slot.kind == "ORG" && watch.org_wide {
                    let mut values = vec![None; op.slots.len()];
                    values[i] = Some(V_ORG.to_owned());
                    calls.push((victim.platform_read.clone(), build(op, &values).0));
                }
            }
            if watch.org_wide {
                let values = vec![None; op.slots.len()];
                calls.push((victim.own_view.clone(), build(op, &values).0));
            }
        }
    }
    let mut out = BTreeMap::new();
    for (token, path) in calls {
        let r = call(app, "GET", &path, Some(&token), None).await;
        let who = if token == victim.own_view {
            "victim's own view"
        } else {
            "platform read"
        };
        out.insert(
            format!("{who}: GET {path}"),
            format!("{} {}", r.status, r.text),
        );
    }
    out
}

/// What changed between two snapshots, in one entry: every answer that
/// changed by name, and the first one's before and after.
fn state_changes(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Option<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<&String> = keys
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    let first = changed.first()?;
    let show = |v: Option<&String>| v.map(|v| cut(v)).unwrap_or_else(|| "(not asked)".into());
    Some(format!(
        "{} of {} answers changed:\n        {}\n      first, {first}\n        before: {}\n        after:  {}",
        changed.len(),
        before.len(),
        changed
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join("\n        "),
        show(before.get(*first)),
        show(after.get(*first)),
    ))
}

fn cut(s: &str) -> String {
    let mut t: String = s.chars().take(300).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

// ---------------------------------------------------------------------------
// The tenants.

async fn expect(app: &TestApp, method: &str, path: &str, token: &str, body: Value) -> Value {
    let r = call(app, method, path, Some(token), Some(&body)).await;
    assert!(
        (200..300).contains(&r.status),
        "setup {method} {path} {body}: {}",
        r.brief()
    );
    serde_json::from_str(&r.text).unwrap()
}

async fn pool(app: &TestApp, ws: &str, org: &str, rt: &str, total: u64) -> String {
    let b =
        json!({"workspace_id": ws, "organization_id": org, "resource_type": rt, "total": total});
    let v = expect(app, "POST", "/v1/capacity", &app.tokens.platform, b).await;
    v["data"]["id"].as_str().unwrap().to_owned()
}

async fn allocation(app: &TestApp, pool: &str, line: &str, committed: u64) -> String {
    let b = json!({"capacity_pool_id": pool, "service_line_id": line, "committed": committed,
        "starts_at": "2026-01-05T00:00:00Z"});
    let v = expect(
        app,
        "POST",
        "/v1/capacity/allocations",
        &app.tokens.platform,
        b,
    )
    .await;
    v["data"]["id"].as_str().unwrap().to_owned()
}

async fn request(app: &TestApp, token: &str, ws: &str, note: &str) -> String {
    let b = json!({"workspace_id": ws, "resource_type": "talent_hours", "quantity": 80,
        "starts_at": "2026-07-01T00:00:00Z", "ends_at": "2026-09-30T00:00:00Z", "note": note});
    let v = expect(app, "POST", "/v1/capacity/requests", token, b).await;
    v["data"]["id"].as_str().unwrap().to_owned()
}

async fn endpoint(app: &TestApp, token: &str, url: &str, description: &str) -> Option<String> {
    let b = json!({"url": url, "description": description});
    let r = call(app, "POST", "/v1/webhook-endpoints", Some(token), Some(&b)).await;
    let v: Value = serde_json::from_str(&r.text).ok()?;
    v["data"]["id"].as_str().map(str::to_owned)
}

async fn events_of(app: &TestApp, token: &str) -> Vec<Value> {
    let r = call(app, "GET", "/v1/events?limit=100", Some(token), None).await;
    let v: Value = serde_json::from_str(&r.text).unwrap();
    v["data"].as_array().cloned().unwrap_or_default()
}

fn usage(records: &[(&str, &str)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, alloc)| {
            json!({"id": id, "allocation_id": alloc, "quantity": 30,
            "occurred_at": "2026-04-08T10:00:00Z"})
        })
        .collect();
    json!({ "records": records })
}

#[tokio::test]
async fn no_hostile_caller_sees_changes_or_detects_another_tenants_objects() {
    let started = std::time::Instant::now();
    let app = spawn_empty_app().await;
    let s = app.store.as_ref();
    let org = TokenKind::Organization;
    let v_write = mint_token(s, org, Some(V_ORG), &[], Access::Write).await;
    let v_read = mint_token(s, org, Some(V_ORG), &[], Access::Read).await;
    let v_narrow = mint_token(s, org, Some(V_ORG), &[V1], Access::Write).await;
    let a_write = mint_token(s, org, Some(A_ORG), &[], Access::Write).await;
    let platform = app.tokens.platform.clone();

    // The victim: two workspaces with pools, allocations, usage, demand,
    // a change with a reason, and a webhook endpoint; each secret text marked.
    let v1_pool = pool(&app, V1, V_ORG, "talent_hours", 200).await;
    let v1_compute = pool(&app, V1, V_ORG, "compute", 1000).await;
    let v2_pool = pool(&app, V2, V_ORG, "talent_hours", 100).await;
    let v1_alloc = allocation(&app, &v1_pool, V1_LINE, 40).await;
    let v1_alloc_compute = allocation(&app, &v1_compute, V1_LINE_COMPUTE, 300).await;
    let v2_alloc = allocation(&app, &v2_pool, V2_LINE, 60).await;
    expect(
        &app,
        "POST",
        "/v1/capacity/usage",
        &platform,
        usage(&[
            ("vsecret-usage-v1", &v1_alloc),
            ("vsecret-usage-v2", &v2_alloc),
        ]),
    )
    .await;
    expect(
        &app,
        "PATCH",
        &format!("/v1/capacity/allocations/{v2_alloc}"),
        &v_write,
        json!({"committed": 50, "reason": "vsecret-v2-reason"}),
    )
    .await;
    let v1_req = request(&app, &v_write, V1, "vsecret-v1-note").await;
    let v2_req = request(&app, &v_write, V2, "vsecret-v2-note").await;

    // The attacker: a workspace of its own with the same kinds of objects.
    let a_pool = pool(&app, A_WS, A_ORG, "talent_hours", 1_000_000_000).await;
    let a_alloc = allocation(&app, &a_pool, A_LINE, 40).await;
    let a_req = request(&app, &a_write, A_WS, "attacker note").await;
    let a_hook = endpoint(&app, &a_write, "https://198.51.100.7/attacker", "attacker").await;
    // The narrowed token's own endpoint (it must not delete the victim's).
    let narrow_hook = endpoint(&app, &v_narrow, "https://198.51.100.8/narrow", "narrow").await;
    // The victim's endpoint last, so that none of the setup's events is
    // delivered to it: its deliveries then change only if a caller's do.
    let v_hook = endpoint(
        &app,
        &v_write,
        "https://203.0.113.10/vsecret-hook-path",
        "vsecret-hook-description",
    )
    .await
    .expect("the victim's webhook endpoint");

    let mut items: Vec<Item> = Vec::new();
    let mut add = |kind: &str, value: &str, group: Group| {
        items.push(Item {
            kind: kind.to_owned(),
            value: value.to_owned(),
            group,
        })
    };
    add("ORG", V_ORG, Group::Org);
    add("WS", V1, Group::V1);
    add("WS", V2, Group::V2);
    add("CAP", &v1_pool, Group::V1);
    add("CAP", &v1_compute, Group::V1);
    add("CAP", &v2_pool, Group::V2);
    add("ALLOC", &v1_alloc, Group::V1);
    add("ALLOC", &v1_alloc_compute, Group::V1);
    add("ALLOC", &v2_alloc, Group::V2);
    add("LIN", V1_LINE, Group::V1);
    add("LIN", V1_LINE_COMPUTE, Group::V1);
    add("LIN", V2_LINE, Group::V2);
    add("REQ", &v1_req, Group::V1);
    add("REQ", &v2_req, Group::V2);
    add("WHE", &v_hook, Group::Org);
    let v_events = events_of(&app, &v_read).await;
    for e in &v_events {
        let text = e.to_string();
        let group = if text.contains(V2) {
            Group::V2
        } else if text.contains(V1) {
            Group::V1
        } else {
            Group::Org
        };
        add("EVT", e["id"].as_str().unwrap(), group);
    }
    add("TEXT", "vsecret-v1-note", Group::V1);
    add("TEXT", "vsecret-v2-note", Group::V2);
    add("TEXT", "vsecret-v2-reason", Group::V2);
    add("TEXT", "vsecret-usage-v1", Group::V1);
    add("TEXT", "vsecret-usage-v2", Group::V2);
    add("TEXT", "vsecret-hook", Group::Org);
    assert!(
        items
            .iter()
            .any(|i| i.kind == "EVT" && i.group == Group::V2),
        "the victim's events name their workspace: {v_events:?}"
    );

    let a_event = events_of(&app, &a_write)
        .await
        .into_iter()
        .find(|e| e.to_string().contains(A_WS))
        .and_then(|e| e["id"].as_str().map(str::to_owned));
    let v1_event = items
        .iter()
        .find(|i| i.kind == "EVT" && i.group == Group::V1)
        .map(|i| i.value.clone());

    let own = |pairs: &[(&str, Option<&str>)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), v.to_owned())))
            .collect()
    };
    let victim_own = own(&[
        ("ORG", Some(V_ORG)),
        ("WS", Some(V1)),
        ("CAP", Some(&v1_pool)),
        ("ALLOC", Some(&v1_alloc)),
        ("LIN", Some(V1_LINE)),
        ("REQ", Some(&v1_req)),
        ("EVT", v1_event.as_deref()),
        ("WHE", Some(&v_hook)),
    ]);
    let mut narrow_own = victim_own.clone();
    match &narrow_hook {
        Some(h) => narrow_own.insert("WHE".into(), h.clone()),
        None => narrow_own.remove("WHE"),
    };
    let all = vec![Group::V1, Group::V2, Group::Org];
    let everything = Watch {
        groups: all.clone(),
        org_wide: true,
    };
    let hidden_in = |groups: &[Group]| -> Vec<Item> {
        items
            .iter()
            .filter(|i| groups.contains(&i.group))
            .cloned()
            .collect()
    };
    let callers = vec![
        Caller {
            name: "no token",
            token: None,
            hidden: hidden_in(&all),
            own: BTreeMap::new(),
            watch: everything.clone(),
        },
        Caller {
            name: "bad token",
            token: Some(generate_secret()),
            hidden: hidden_in(&all),
            own: BTreeMap::new(),
            watch: everything.clone(),
        },
        Caller {
            name: "platform read",
            token: Some(app.tokens.platform_read.clone()),
            hidden: Vec::new(),
            own: victim_own.clone(),
            watch: everything.clone(),
        },
        Caller {
            name: "victim read",
            token: Some(v_read.clone()),
            hidden: Vec::new(),
            own: victim_own.clone(),
            watch: everything.clone(),
        },
        Caller {
            name: "other org write",
            token: Some(a_write.clone()),
            hidden: hidden_in(&all),
            own: own(&[
                ("ORG", Some(A_ORG)),
                ("WS", Some(A_WS)),
                ("CAP", Some(&a_pool)),
                ("ALLOC", Some(&a_alloc)),
                ("LIN", Some(A_LINE)),
                ("REQ", Some(&a_req)),
                ("EVT", a_event.as_deref()),
                ("WHE", a_hook.as_deref()),
            ]),
            watch: everything.clone(),
        },
        Caller {
            name: "victim write narrowed to V1",
            token: Some(v_narrow.clone()),
            hidden: hidden_in(&[Group::V2]),
            own: narrow_own,
            watch: Watch {
                groups: vec![Group::V2],
                org_wide: false,
            },
        },
    ];

    let res = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    let doc: Value = res.json().await.unwrap();
    let ops = operations(&doc);
    assert!(
        ops.iter().any(|o| !o.slots.is_empty()),
        "the document's operations take ids"
    );
    let victim = Victim {
        items: items.clone(),
        platform_read: app.tokens.platform_read.clone(),
        // Webhook endpoints answer only to write tokens; the snapshot only reads.
        own_view: v_write.clone(),
    };

    let mut failures: Vec<String> = Vec::new();
    let mut requests = 0usize;
    let (mut snapshots, mut snapshot_size) = (0usize, 0usize);
    // MATRIX_TRACE=1 prints every request of the matrix and its answer.
    let trace = std::env::var_os("MATRIX_TRACE").is_some();
    for caller in &callers {
        let token = caller.token.as_deref();
        let mut before = snapshot(&app, &ops, &victim, &caller.watch).await;
        snapshots += 1;
        snapshot_size = snapshot_size.max(before.len());
        for op in &ops {
            let base: Vec<Option<String>> = op
                .slots
                .iter()
                .map(|s| {
                    (s.required).then(|| {
                        caller
                            .own
                            .get(&s.kind)
                            .cloned()
                            .unwrap_or_else(|| fresh(&s.kind))
                    })
                })
                .collect();
            let tag = |where_: &str| format!("[{}] {} {where_}", caller.name, op.label());
            for (i, slot) in op.slots.iter().enumerate() {
                for x in caller.hidden.iter().filter(|h| h.kind == slot.kind) {
                    let n = fresh(&slot.kind);
                    let mut with_x = base.clone();
                    with_x[i] = Some(x.value.clone());
                    let mut with_n = base.clone();
                    with_n[i] = Some(n.clone());
                    let (px, bx) = build(op, &with_x);
                    let (pn, bn) = build(op, &with_n);
                    let rx = call(&app, &op.method, &px, token, bx.as_ref()).await;
                    let rn = call(&app, &op.method, &pn, token, bn.as_ref()).await;
                    requests += 2;
                    if trace {
                        eprintln!(
                            "[{}] {} {px} {} -> {} | {pn} -> {}",
                            caller.name,
                            op.method,
                            bx.as_ref().map(|b| b.to_string()).unwrap_or_default(),
                            rx.brief().chars().take(400).collect::<String>(),
                            rn.brief().chars().take(400).collect::<String>()
                        );
                    }
                    let place = format!("{:?}", slot.loc);
                    if normalise(&rx, &x.value) != normalise(&rn, &n) {
                        failures.push(format!(
                            "{} {place}: the other tenant's {} answers differently from a nonexistent {}\n      {} {px} {}\n        -> {}\n      {} {pn} {}\n        -> {}",
                            tag("differential"),
                            x.value,
                            n,
                            op.method,
                            bx.map(|b| b.to_string()).unwrap_or_default(),
                            rx.brief(),
                            op.method,
                            bn.map(|b| b.to_string()).unwrap_or_default(),
                            rn.brief()
                        ));
                    }
                    let leaked = leaks(&rx.text, &caller.hidden, Some(&x.value));
                    if !leaked.is_empty() {
                        failures.push(format!(
                            "{} {place}={}: the answer shows {leaked:?}: {}",
                            tag("leak"),
                            x.value,
                            rx.brief()
                        ));
                    }
                }
            }
            // The request with the caller's own ids (or fresh ones): its answer
            // must show nothing hidden (a list shows only the caller's).
            let (p, b) = build(op, &base);
            let r = call(&app, &op.method, &p, token, b.as_ref()).await;
            requests += 1;
            if trace {
                eprintln!(
                    "[{}] base {} {p} {} -> {}",
                    caller.name,
                    op.method,
                    b.as_ref().map(|b| b.to_string()).unwrap_or_default(),
                    r.brief().chars().take(400).collect::<String>()
                );
            }
            let leaked = leaks(&r.text, &caller.hidden, None);
            if !leaked.is_empty() {
                failures.push(format!(
                    "{} {p}: the answer shows {leaked:?}: {}",
                    tag("leak"),
                    r.brief()
                ));
            }
            if op.method != "GET" {
                let after = snapshot(&app, &ops, &victim, &caller.watch).await;
                snapshots += 1;
                if let Some(change) = state_changes(&before, &after) {
                    failures.push(format!("{} changed the victim: {change}", tag("state")));
                }
                before = after;
            }
        }
        let after = snapshot(&app, &ops, &victim, &caller.watch).await;
        snapshots += 1;
        if let Some(change) = state_changes(&before, &after) {
            failures.push(format!(
                "[{}] its reads changed the victim: {change}",
                caller.name
            ));
        }
    }
    eprintln!(
        "hostile matrix: {} operations x {} callers, {requests} requests, {snapshots} state snapshots of up to {snapshot_size} answers, {} failures, {:.1} s",
        ops.len(),
        callers.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} hostile combinations failed:\n{}",
        failures.len(),
        failures
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{:>3}. {f}", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The routes of a change not yet merged (workspace registration), as their
/// document would show them: the generator finds their id places and writes
/// a valid body without being told about them.
#[test]
fn the_generator_covers_a_route_it_has_never_seen() {
    let doc = json!({
        "paths": {
            "/v1/workspaces": {"get": {"parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}},
                {"name": "organization_id", "in": "query", "schema": {"$ref": "#/components/schemas/OrganizationId"}}
            ]}},
            "/v1/workspaces/{id}": {
                "get": {"parameters": [{"name": "id", "in": "path", "required": true,
                    "schema": {"$ref": "#/components/schemas/WorkspaceId"}}]},
                "put": {
                    "parameters": [{"name": "id", "in": "path", "required": true,
                        "schema": {"$ref": "#/components/schemas/WorkspaceId"}}],
                    "requestBody": {"content": {"application/json": {"schema":
                        {"$ref": "#/components/schemas/PutWorkspace"}}}}
                }
            },
            "/healthz": {"get": {}}
        },
        "components": {"schemas": {
            "WorkspaceId": {"type": "string", "pattern": "^WS-[0-9]{2}-[0-9]{6,15}$"},
            "OrganizationId": {"type": "string", "pattern": "^ORG-[0-9]{2}-[0-9]{6,15}$"},
            "PutWorkspace": {"type": "object", "required": ["organization_id"],
                "properties": {
                    "organization_id": {"$ref": "#/components/schemas/OrganizationId"},
                    "name": {"type": ["string", "null"], "maxLength": 200}
                },
                "additionalProperties": false}
        }}
    });
    let ops = operations(&doc);
    let shown: Vec<String> = ops
        .iter()
        .map(|o| {
            let slots: Vec<String> = o
                .slots
                .iter()
                .map(|s| format!("{:?}:{}:{}", s.loc, s.kind, s.required))
                .collect();
            format!(
                "{} {} {:?} {}",
                o.label(),
                slots.join(","),
                o.fixed_query,
                o.body.as_ref().map(Value::to_string).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            r#"GET /v1/workspaces Query("organization_id"):ORG:false [("limit", "100")] "#,
            r#"GET /v1/workspaces/{id} Path("id"):WS:true [] "#,
            r#"PUT /v1/workspaces/{id} Path("id"):WS:true,Body("/organization_id"):ORG:true [] {"organization_id":"","name":"matrix"}"#,
        ]
    );
    let put = &ops[2];
    let (path, body) = build(put, &[Some(V1.into()), Some(V_ORG.into())]);
    assert_eq!(path, format!("/v1/workspaces/{V1}"));
    assert_eq!(
        body,
        Some(json!({"organization_id": V_ORG, "name": "matrix"}))
    );
}

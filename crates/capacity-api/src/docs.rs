//! `GET /docs`: the API reference as one self-contained HTML page, rendered
//! on the server from the OpenAPI document. No script, font or stylesheet is
//! fetched from anywhere (it works with no network at all), and every
//! problem code has its anchor `#problem-<code>`, which is what a problem's
//! `type` points at.

use crate::error::PROBLEM_CODES;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::OnceLock;

/// The rendered API reference
#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "docs",
    tag = "operations",
    responses((status = 200, description = "An HTML page, self-contained", content_type = "text/html", body = String))
)]
pub async fn page() -> Response {
    static PAGE: OnceLock<String> = OnceLock::new();
    let html = PAGE.get_or_init(|| render(&crate::openapi::document()));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing external may load, even if the page is altered.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            ),
        ],
        html.as_str(),
    )
        .into_response()
}

/// Escapes text for HTML.
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

/// The little Markdown the descriptions use: paragraphs, `- ` lists,
/// `code`, **bold** and [text](link) with local links only.
fn md(s: &str) -> String {
    let mut out = String::new();
    let mut in_list = false;
    for block in s.split("\n\n") {
        for line in block.lines() {
            if let Some(item) = line.trim_start().strip_prefix("- ") {
                if !in_list {
                    out.push_str("<ul>");
                    in_list = true;
                }
                let _ = write!(out, "<li>{}</li>", inline(item));
            } else {
                if in_list {
                    out.push_str("</ul>");
                    in_list = false;
                }
                let _ = write!(out, "<p>{}</p>", inline(line));
            }
        }
        if in_list {
            out.push_str("</ul>");
            in_list = false;
        }
    }
    out
}

fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('`')
            && let Some(end) = r.find('`')
        {
            let _ = write!(out, "<code>{}</code>", esc(&r[..end]));
            rest = &r[end + 1..];
            continue;
        }
        if let Some(r) = rest.strip_prefix("**")
            && let Some(end) = r.find("**")
        {
            let _ = write!(out, "<strong>{}</strong>", inline(&r[..end]));
            rest = &r[end + 2..];
            continue;
        }
        if let Some(r) = rest.strip_prefix('[')
            && let Some(mid) = r.find("](")
            && let Some(end) = r[mid..].find(')')
        {
            let (text, href) = (&r[..mid], &r[mid + 2..mid + end]);
            if href.starts_with('/') || href.starts_with('#') {
                let _ = write!(out, "<a href=\"{}\">{}</a>", esc(href), inline(text));
            } else {
                out.push_str(&inline(text));
            }
            rest = &r[mid + end + 1..];
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push_str(&esc(&c.to_string()));
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A short type label for a schema, linking named components.
fn type_label(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{}\">{}</a>", anchor(name), esc(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(items) = schema.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = items
                .iter()
                .filter(|v| v.get("type").and_then(Value::as_str) != Some("null"))
                .map(type_label)
                .collect();
            let nullable = items
                .iter()
                .any(|v| v.get("type").and_then(Value::as_str) == Some("null"));
            let mut label = parts.join(" | ");
            if label.is_empty() {
                label = "any".into();
            }
            return if nullable {
                format!("{label} | null")
            } else {
                label
            };
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    };
    if ty.starts_with("array") {
        let item = schema.get("items").map(type_label).unwrap_or_default();
        return format!("array of {item}");
    }
    let mut label = esc(&ty);
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let vs: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", esc(&v.to_string().replace('"', ""))))
            .collect();
        label = format!("{label}: one of {}", vs.join(", "));
    }
    let mut constraints = Vec::new();
    for key in [
        "pattern",
        "format",
        "minimum",
        "exclusiveMinimum",
        "maximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
    ] {
        if let Some(v) = schema.get(key) {
            let v = match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            constraints.push(format!("{key} <code>{}</code>", esc(&v)));
        }
    }
    if !constraints.is_empty() {
        label = format!("{label} <span class=c>({})</span>", constraints.join(", "));
    }
    label
}

fn json_block(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    format!("<pre>{}</pre>", esc(&text))
}

fn properties_table(schema: &Value) -> String {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return format!("<p>{}</p>", type_label(schema));
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = String::from("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
    for (name, p) in props {
        let req = if required.contains(&name.as_str()) {
            " <span class=req>required</span>"
        } else {
            ""
        };
        let desc = p.get("description").and_then(Value::as_str).unwrap_or("");
        let _ = write!(
            out,
            "<tr><td><code>{}</code>{req}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            type_label(p),
            md(desc)
        );
    }
    if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push_str("<tr><td colspan=3 class=c>Other fields are refused (422).</td></tr>");
    }
    out.push_str("</table>");
    out
}

fn method_class(m: &str) -> &'static str {
    match m {
        "get" => "get",
        "post" => "post",
        "patch" => "patch",
        "put" => "put",
        "delete" => "delete",
        _ => "other",
    }
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d232b;display:flex}
nav{width:270px;flex:none;height:100vh;overflow:auto;position:sticky;top:0;background:#f4f6f8;border-right:1px solid #dde2e7;padding:16px;box-sizing:border-box;font-size:13px}
nav a{display:block;color:#1d232b;text-decoration:none;padding:2px 0}nav h3{margin:14px 0 4px;font-size:12px;text-transform:uppercase;color:#5b6673}
main{padding:24px 40px;max-width:1000px;min-width:0}h1{margin-top:0}h2{border-bottom:1px solid #dde2e7;padding-bottom:4px;margin-top:40px}
section.op{border:1px solid #dde2e7;border-radius:6px;padding:4px 18px 12px;margin:20px 0}
.m{display:inline-block;min-width:56px;text-align:center;border-radius:4px;color:#fff;font-weight:600;font-size:12px;padding:2px 6px;margin-right:8px}
.get{background:#2f7bbf}.post{background:#2e9a5b}.patch{background:#c4861b}.put{background:#7b55b5}.delete{background:#c2453d}.other{background:#666}
code{background:#eef1f4;padding:1px 4px;border-radius:3px;font-size:13px}pre{background:#1d232b;color:#e6e9ed;padding:12px;border-radius:6px;overflow:auto;font-size:12.5px}
table{border-collapse:collapse;width:100%;margin:8px 0;font-size:14px}th,td{border:1px solid #dde2e7;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f6f8}
.req{color:#c2453d;font-size:11px}.c{color:#5b6673;font-size:12.5px}.status{font-weight:600}:target{background:#fff8db}";

/// Renders the whole page from an OpenAPI document (as JSON).
pub fn render(doc: &Value) -> String {
    let info = &doc["info"];
    let title = info["title"].as_str().unwrap_or("API");
    let version = info["version"].as_str().unwrap_or("");
    let mut nav = String::new();
    let mut body = String::new();

    // Operations grouped by their first tag, in the document's tag order.
    let tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or("").to_owned(),
                        t["description"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ops: Vec<(String, String, &Value)> = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for m in ["get", "put", "post", "patch", "delete"] {
                if let Some(op) = item.get(m) {
                    ops.push((m.to_owned(), path.clone(), op));
                }
            }
        }
    }
    let _ = write!(
        body,
        "<h1>{}</h1><p class=c>Version {} · OpenAPI {} · machine-readable at <a href=\"/openapi.json\">/openapi.json</a></p>{}",
        esc(title),
        esc(version),
        esc(doc["openapi"].as_str().unwrap_or("")),
        md(info["description"].as_str().unwrap_or(""))
    );
    let _ = write!(
        body,
        "<h2 id=auth>Authentication</h2><p>Every <code>/v1</code> operation needs <code>Authorization: Bearer &lt;token&gt;</code>. Tokens are platform or organization tokens with <code>read</code> or <code>write</code> scope; mint one with <code>capacity tokens create</code>. A missing or bad token is answered <a href=\"#problem-unauthorized\">401</a>, a token without the right scope <a href=\"#problem-forbidden\">403</a>, and objects of other organizations are <a href=\"#problem-not_found\">404</a> as if they did not exist.</p>"
    );
    nav.push_str("<a href=\"#auth\"><strong>Authentication</strong></a><a href=\"#problems\"><strong>Errors</strong></a><a href=\"#schemas\"><strong>Schemas</strong></a>");
    for (tag, tag_desc) in &tags {
        let in_tag: Vec<&(String, String, &Value)> = ops
            .iter()
            .filter(|(_, _, op)| op["tags"][0].as_str() == Some(tag.as_str()))
            .collect();
        if in_tag.is_empty() {
            continue;
        }
        let _ = write!(nav, "<h3>{}</h3>", esc(tag));
        let _ = write!(
            body,
            "<h2 id=\"tag-{}\">{}</h2><p>{}</p>",
            anchor(tag),
            esc(tag),
            inline(tag_desc)
        );
        for (m, path, op) in in_tag {
            let id = op["operationId"].as_str().unwrap_or("");
            let summary = op["summary"].as_str().unwrap_or(path);
            let _ = write!(
                nav,
                "<a href=\"#op-{}\"><span class=\"m {}\">{}</span>{}</a>",
                anchor(id),
                method_class(m),
                m.to_uppercase(),
                esc(summary)
            );
            body.push_str(&operation(m, path, op));
        }
    }

    // Errors, with one anchor per code.
    body.push_str("<h2 id=problems>Errors</h2><p>Every error is an RFC 9457 <code>application/problem+json</code> object: <code>type</code> (this page, at the code's anchor), <code>title</code>, <code>status</code>, <code>detail</code>, a stable <code>code</code>, and for validation failures <code>errors[]</code> naming each <code>field</code>. No request, however malformed, is answered with a 5xx on purpose; <code>500</code> means a bug, logged with the request id.</p><table><tr><th>code</th><th>status</th><th>meaning</th></tr>");
    for (code, status, what) in PROBLEM_CODES {
        let _ = write!(
            body,
            "<tr id=\"problem-{code}\"><td><code>{code}</code></td><td class=status>{status}</td><td>{}</td></tr>",
            md(what)
        );
    }
    body.push_str("</table>");

    // Schemas.
    body.push_str("<h2 id=schemas>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, s) in schemas {
            let _ = write!(
                body,
                "<h3 id=\"schema-{}\">{}</h3>{}{}",
                anchor(name),
                esc(name),
                md(s["description"].as_str().unwrap_or("")),
                properties_table(s)
            );
        }
    }
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><title>{} reference</title><style>{STYLE}</style></head><body><nav><strong>{}</strong>{nav}</nav><main>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

fn operation(m: &str, path: &str, op: &Value) -> String {
    let mut out = String::new();
    let id = op["operationId"].as_str().unwrap_or("");
    let _ = write!(
        out,
        "<section class=op id=\"op-{}\"><h3><span class=\"m {}\">{}</span><code>{}</code></h3><p><strong>{}</strong></p>{}",
        anchor(id),
        method_class(m),
        m.to_uppercase(),
        esc(path),
        esc(op["summary"].as_str().unwrap_or("")),
        md(op["description"].as_str().unwrap_or(""))
    );
    if op.get("security").is_some() {
        out.push_str("<p class=c>Needs a bearer token.</p>");
    }
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>description</th></tr>");
        for p in params {
            let req = if p["required"].as_bool() == Some(true) {
                " <span class=req>required</span>"
            } else {
                ""
            };
            let example = p
                .get("example")
                .map(|e| format!(" Example: <code>{}</code>", esc(&e.to_string())))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{req}</td><td>{}</td><td>{}</td><td>{}{example}</td></tr>",
                esc(p["name"].as_str().unwrap_or("")),
                esc(p["in"].as_str().unwrap_or("")),
                type_label(&p["schema"]),
                md(p["description"].as_str().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (media, c) in content {
            let _ = write!(
                out,
                "<h4>Request body <span class=c>{}</span></h4><p>{}</p>",
                esc(media),
                type_label(&c["schema"])
            );
            if let Some(example) = c.get("example") {
                let _ = write!(out, "<p class=c>Example</p>{}", json_block(example));
            }
        }
    }
    out.push_str("<h4>Responses</h4><table><tr><th>status</th><th>description</th></tr>");
    let mut examples = String::new();
    if let Some(responses) = op["responses"].as_object() {
        for (status, r) in responses {
            let mut types = Vec::new();
            if let Some(content) = r["content"].as_object() {
                for (media, c) in content {
                    types.push(format!(
                        "<span class=c>{} {}</span>",
                        esc(media),
                        type_label(&c["schema"])
                    ));
                    if status.starts_with('2')
                        && let Some(example) = c.get("example")
                    {
                        let _ = write!(
                            examples,
                            "<p class=c>Example answer ({status})</p>{}",
                            json_block(example)
                        );
                    }
                }
            }
            let _ = write!(
                out,
                "<tr><td class=status>{}</td><td>{}{}</td></tr>",
                esc(status),
                md(r["description"].as_str().unwrap_or("")),
                types.join("<br>")
            );
        }
    }
    out.push_str("</table>");
    out.push_str(&examples);
    out.push_str("</section>");
    out
}

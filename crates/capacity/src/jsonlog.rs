//! The JSON log line: `{"timestamp":…,"level":…,"fields":{…},"target":…}`,
//! the shape of `tracing-subscriber`'s JSON format, written straight into
//! the line. That format goes through serde for every field and was ~19,000
//! instructions per request line, a sixth of a whole read (callgrind); this
//! one writes each field as it is visited. Spans are not logged (the service
//! opens none). A record from a dependency's `log` macros keeps `log` as its
//! target and shows where it came from in its `log.target`, `log.file`, …
//! fields.

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The line is built in a `String` of its own and handed over whole:
        // written piece by piece, each piece was a dynamic call through
        // `Writer` (a line: ~6,500 instructions then, ~5,100 now, callgrind).
        let mut line = String::with_capacity(256);
        let meta = event.metadata();
        write!(
            line,
            "{{\"timestamp\":\"{:.6}\",\"level\":\"{}\",\"fields\":{{",
            jiff::Timestamp::now(),
            meta.level()
        )?;
        let mut fields = Fields {
            w: &mut line,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        line.push_str("},\"target\":");
        string(&mut line, meta.target())?;
        line.push_str("}\n");
        w.write_str(&line)
    }
}

/// Writes each field as `"name":value`.
struct Fields<'a, W> {
    w: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: Write> Fields<'_, W> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let w = &mut *self.w;
        self.result = (|| {
            if !self.first {
                w.write_char(',')?;
            }
            string(w, field.name())?;
            w.write_char(':')?;
            value(w)
        })();
        self.first = false;
    }
}

impl<W: Write> Visit for Fields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |w| string(w, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.field(field, |w| write!(w, "{value}"));
        } else {
            self.field(field, |w| string(w, &value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// `s` as a JSON string.
fn string(w: &mut impl Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(&mut *w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaped<'a, W>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        // Only ASCII needs escaping, so a byte scan finds every place.
        while let Some(i) = s.bytes().position(|b| b == b'"' || b == b'\\' || b < 0x20) {
            self.0.write_str(&s[..i])?;
            match s.as_bytes()[i] {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                b'\t' => self.0.write_str("\\t")?,
                b => write!(self.0, "\\u{b:04x}")?,
            }
            s = &s[i + 1..];
        }
        self.0.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLine)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "capacity::http",
                request_id = "a\"b\\c\n\u{1}é",
                status = 201u16,
                latency_us = 17u64,
                delta = -3i64,
                ok = true,
                ratio = 0.5f64,
                odd = f64::NAN,
                route = %"/v1/capacity/{id}",
                "request {}", 7
            );
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<_> = line.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["timestamp", "level", "fields", "target"]);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "capacity::http");
        let stamp = line["timestamp"].as_str().unwrap();
        assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{stamp}");
        assert_eq!(
            line["fields"],
            serde_json::json!({
                "message": "request 7",
                "request_id": "a\"b\\c\n\u{1}é",
                "status": 201,
                "latency_us": 17,
                "delta": -3,
                "ok": true,
                "ratio": 0.5,
                "odd": "NaN",
                "route": "/v1/capacity/{id}",
            })
        );
    }
}

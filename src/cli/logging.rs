//! Log lines on stderr: text (the default) or JSON (`--log-format json`).
//!
//! Logged values come from requests too (`by`, reasons, run file paths in
//! errors). In the text format a raw newline or escape byte in one of them
//! would forge a log line or drive the terminal, so every field is written
//! with control characters escaped. The JSON format escapes them already.

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{self, FormatFields};

use super::args::LogFormat;

/// Install the subscriber for the whole process (once; later calls do nothing).
pub(super) fn init(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("PORTFLOW_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            // No colour codes in the journal or a log file.
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(escaped_fields())
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}

/// Text-format fields as `name=value`, the message bare, control characters
/// escaped (see the module documentation).
pub(super) fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    format::debug_fn(|w, field, value| {
        let text = escape_controls(&format!("{value:?}"));
        if field.name() == "message" {
            w.write_str(&text)
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

pub(super) use crate::report::escape::escape_controls;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_value_with_a_newline_stays_on_its_line() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let by = "ops\n2030-01-01T00:00:00Z  INFO portflow: forged\u{1b}[2J";
            tracing::info!(by = %by, reason = by, n = 3, "operator input {}", "x\ny");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("operator input x\\ny by=ops\\n2030-01-01T00:00:00Z  INFO portflow: forged\\u{1b}[2J"), "{text}");
        assert!(text.contains("reason=\"ops\\n2030"), "{text}");
        assert!(text.trim_end().ends_with("n=3"), "{text}");
    }
}

//! The pieces of a self-contained HTML report: the page with its style sheet
//! (screen and print), count badges, tables and horizontal bar charts drawn
//! as inline SVG. No scripts, no external assets; every text passes through
//! [`escape_html`] here, so callers hand over raw data.

use std::fmt::Write as _;

use super::escape::escape_html;

/// The report page's style: readable on screen and printed (A4, no colours lost).
const STYLE: &str = r#"
:root { --ink: #1d2330; --muted: #5b6474; --line: #d9dde5; --ok: #2e7d32; --bad: #c62828;
        --now: #1565c0; --warn: #ef6c00; --bar: #7986cb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0; background: #fff; }
header { background: var(--ink); color: #fff; padding: 16px 28px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header p { margin: 0; color: #c9cfdb; }
main { padding: 8px 28px 28px; max-width: 1400px; }
h2 { font-size: 16px; margin: 22px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.live { display: inline-block; background: var(--warn); color: #fff; border-radius: 3px;
        padding: 1px 8px; margin-left: 8px; font-weight: 600; }
ul.counts { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 8px; }
ul.counts li { border: 1px solid var(--line); border-radius: 4px; padding: 6px 12px; min-width: 110px; }
ul.counts li b { display: block; font-size: 22px; }
li.bad b { color: var(--bad); } li.ok b { color: var(--ok); } li.now b { color: var(--now); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f3f5f8; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.msg { max-width: 520px; overflow-wrap: anywhere; }
.muted { color: var(--muted); }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
svg .passed { fill: var(--ok); } svg .at { fill: var(--now); } svg .stopped { fill: var(--bad); }
svg .plain { fill: var(--bar); } svg .track { fill: #eef0f4; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { font-size: 11px; }
  header { background: none; color: #000; border-bottom: 2px solid #000; padding: 0 0 6px; }
  header p { color: #333; }
  main { padding: 0; max-width: none; }
  section { break-inside: avoid; }
  #subjects { break-inside: auto; }
  thead { display: table-header-group; }
  tr { break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"#;

/// A whole page: `title` in the header with `subtitle` under it, then `body`
/// (already HTML). `badge` adds the orange mark beside the title.
pub fn page(title: &str, subtitle: &str, badge: Option<&str>, body: &str) -> String {
    let badge = badge.map_or(String::new(), |b| {
        format!(
            r#"<span class="live" id="live" data-live="true">{}</span>"#,
            escape_html(b)
        )
    });
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head>\n<body>\
         <header><h1>{t}{badge}</h1><p>{s}</p></header>\n<main>\n{body}</main></body></html>\n",
        t = escape_html(title),
        s = escape_html(subtitle),
    )
}

/// A section with a heading and an id.
pub fn section(id: &str, heading: &str, inner: &str) -> String {
    format!(
        "<section id=\"{}\"><h2>{}</h2>\n{inner}</section>\n",
        escape_html(id),
        escape_html(heading)
    )
}

/// Count badges: `(attribute value, label, count, class)`, each
/// `<li data-{attr}="…" data-count="N">`.
pub fn counts(attr: &str, items: &[(String, String, usize, &str)]) -> String {
    let mut out = String::from("<ul class=\"counts\">");
    for (key, label, n, class) in items {
        let _ = write!(
            out,
            "<li class=\"{}\" data-{attr}=\"{}\" data-count=\"{n}\"><b>{n}</b>{}</li>",
            escape_html(class),
            escape_html(key),
            escape_html(label)
        );
    }
    out.push_str("</ul>\n");
    out
}

/// A table cell.
pub enum Cell {
    /// Text.
    Text(String),
    /// A number, right-aligned.
    Num(String),
    /// Long text (messages), wrapped anywhere.
    Msg(String),
    /// Several lines of text.
    Lines(Vec<String>),
}

/// A table row: its `data-*` attributes (name without `data-`, value), its cells.
pub type Row = (Vec<(&'static str, String)>, Vec<Cell>);

/// A table: a header, then rows each with its `data-*` attributes.
pub fn table(headers: &[&str], rows: &[Row]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape_html(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for (attrs, cells) in rows {
        out.push_str("<tr");
        for (k, v) in attrs {
            let _ = write!(out, " data-{k}=\"{}\"", escape_html(v));
        }
        out.push('>');
        for c in cells {
            match c {
                Cell::Text(t) => {
                    let _ = write!(out, "<td>{}</td>", escape_html(t));
                }
                Cell::Num(t) => {
                    let _ = write!(out, "<td class=\"n\">{}</td>", escape_html(t));
                }
                Cell::Msg(t) => {
                    let _ = write!(out, "<td class=\"msg\">{}</td>", escape_html(t));
                }
                Cell::Lines(ls) => {
                    let body: Vec<String> = ls.iter().map(|l| escape_html(l)).collect();
                    let _ = write!(out, "<td class=\"msg\">{}</td>", body.join("<br>"));
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    out
}

/// One bar of a chart: `data-{attr}="key" data-count="count"`, its label, and
/// the parts it is made of (`(class, n)`, drawn left to right; classes
/// `passed`, `at`, `stopped`, `plain`), each part also a data attribute.
pub struct Bar {
    /// The bar's key (a step id, a bucket id).
    pub key: String,
    /// What is written beside it.
    pub label: String,
    /// Its total.
    pub count: usize,
    /// Its parts.
    pub parts: Vec<(&'static str, usize)>,
}

/// A horizontal bar chart as inline SVG; bars scale to the largest count.
pub fn bar_chart(id: &str, attr: &str, title: &str, bars: &[Bar]) -> String {
    const WIDTH: usize = 900;
    const LABEL: usize = 280;
    const ROW: usize = 18;
    let track = WIDTH - LABEL - 60;
    let max = bars.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let height = ROW * bars.len().max(1) + 8;
    let mut out = format!(
        "<svg id=\"{}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\"><title>{}</title>\n",
        escape_html(id),
        escape_html(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = i * ROW + 4;
        let _ = write!(
            out,
            "<g data-{attr}=\"{}\" data-count=\"{}\"",
            escape_html(&b.key),
            b.count
        );
        for (class, n) in &b.parts {
            let _ = write!(out, " data-{class}=\"{n}\"");
        }
        let _ = write!(
            out,
            "><text x=\"0\" y=\"{}\">{}</text><rect class=\"track\" x=\"{LABEL}\" y=\"{y}\" \
             width=\"{track}\" height=\"{}\"/>",
            y + 12,
            escape_html(&b.label),
            ROW - 4
        );
        let mut x = LABEL;
        for (class, n) in &b.parts {
            let w = n * track / max;
            if w > 0 {
                let _ = write!(
                    out,
                    "<rect class=\"{class}\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{}\"/>",
                    ROW - 4
                );
            }
            x += w;
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text></g>",
            x + 6,
            y + 12,
            b.count
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A legend for the bar classes used.
pub fn legend(items: &[(&str, &str)]) -> String {
    let mut out = String::from("<p class=\"legend\">");
    for (class, label) in items {
        let colour = match *class {
            "passed" => "var(--ok)",
            "at" => "var(--now)",
            "stopped" => "var(--bad)",
            _ => "var(--bar)",
        };
        let _ = write!(
            out,
            "<span><i style=\"background:{colour}\"></i>{}</span>",
            escape_html(label)
        );
    }
    out.push_str("</p>\n");
    out
}

/// Causes grouped by [`super::normalise::Grouper`] as a table whose rows carry
/// `data-count`; `none` when there is none. `what` heads the cause column.
pub fn groups_table(groups: &[super::normalise::Group], what: &str, none: &str) -> String {
    if groups.is_empty() {
        return para("muted", none);
    }
    let rows: Vec<Row> = groups
        .iter()
        .map(|g| {
            (
                vec![("count", g.count.to_string())],
                vec![
                    Cell::Num(g.count.to_string()),
                    Cell::Msg(g.cause.clone()),
                    Cell::Lines(g.examples.clone()),
                    Cell::Lines(g.subjects.clone()),
                ],
            )
        })
        .collect();
    table(&["count", what, "examples", "e.g. subjects"], &rows)
}

/// A paragraph of text.
pub fn para(class: &str, text: &str) -> String {
    format!(
        "<p class=\"{}\">{}</p>\n",
        escape_html(class),
        escape_html(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_given_is_escaped() {
        let t = table(
            &["<h>"],
            &[(
                vec![("subject", "<script>".into())],
                vec![
                    Cell::Text("<script>alert(1)</script>".into()),
                    Cell::Lines(vec!["a<b".into(), "c&d".into()]),
                ],
            )],
        );
        assert!(!t.contains("<script>"), "{t}");
        assert!(t.contains("data-subject=\"&lt;script&gt;\""), "{t}");
        assert!(t.contains("a&lt;b<br>c&amp;d"), "{t}");
        let c = bar_chart(
            "c",
            "step",
            "t",
            &[Bar {
                key: "\"x".into(),
                label: "<y>".into(),
                count: 2,
                parts: vec![("passed", 1), ("stopped", 1)],
            }],
        );
        assert!(
            c.contains("data-step=\"&quot;x\" data-count=\"2\" data-passed=\"1\""),
            "{c}"
        );
        assert!(c.contains("&lt;y&gt;") && !c.contains("<y>"), "{c}");
        let p = page("<t>", "<s>", Some("<l>"), "");
        assert!(!p.contains("<t>") && !p.contains("<s>") && !p.contains("<l>"));
        assert!(!p.contains("<script"), "no scripts in a report");
    }
}

//! Templated arguments: `${expr}` inside strings.
//!
//! - `${expr}` is replaced by the value of the [`Expr`];
//! - `$${` is a literal `${`; any other `$` is literal;
//! - a template that is exactly one `${expr}` renders to the expression's JSON
//!   value (so `null`, booleans and numbers survive: an optional input passes as
//!   `null`);
//! - otherwise parts are rendered as text and concatenated: strings as they are,
//!   numbers and booleans as their text; `null`, lists and objects are errors
//!   naming the expression.

use serde_json::Value;

use super::expr::{EvalError, Expr, ExprError, Scope};

/// One piece of a template.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    /// An expression and the byte offset of its source inside the template.
    Expr(usize, Expr),
}

/// A string with `${expr}` parts. A template that is exactly one `${expr}`
/// renders to the expression's value (so `null` and booleans survive);
/// otherwise parts are rendered as text and concatenated.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    src: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parse a template. Error offsets are byte offsets into `src`.
    pub fn parse(src: &str) -> Result<Template, ExprError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let bytes = src.as_bytes();
        let mut i = 0;
        let mut lit_start = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"$${") {
                text.push_str(&src[lit_start..i]);
                text.push_str("${");
                i += 3;
                lit_start = i;
            } else if bytes[i..].starts_with(b"${") {
                text.push_str(&src[lit_start..i]);
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                let start = i + 2;
                let end = find_close(src, start).ok_or_else(|| ExprError {
                    offset: i,
                    message: "unterminated `${` (missing `}`)".into(),
                })?;
                let inner = &src[start..end];
                if inner.trim().is_empty() {
                    return Err(ExprError {
                        offset: i,
                        message: "empty `${}`".into(),
                    });
                }
                let expr = Expr::parse(inner).map_err(|e| ExprError {
                    offset: start + e.offset,
                    message: e.message,
                })?;
                parts.push(Part::Expr(start, expr));
                i = end + 1;
                lit_start = i;
            } else {
                i += 1;
            }
        }
        text.push_str(&src[lit_start..]);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template {
            src: src.to_string(),
            parts,
        })
    }

    /// Source text.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Render as text for people (messages, instructions): never fails; a
    /// missing value reads `none`, lists and objects appear as JSON, and an
    /// expression that cannot be evaluated shows its source.
    pub fn render_text(&self, ctx: &dyn Scope) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(_, e) => match e.eval(ctx) {
                    Ok(Value::String(s)) => out.push_str(&s),
                    Ok(Value::Null) => out.push_str("none"),
                    Ok(v) => out.push_str(&v.to_string()),
                    Err(_) => out.push_str(&format!("${{{}}}", e.source())),
                },
            }
        }
        out
    }

    /// Render against a context.
    pub fn render(&self, ctx: &dyn Scope) -> Result<Value, EvalError> {
        match self.parts.as_slice() {
            [] => Ok(Value::String(String::new())),
            [Part::Expr(_, e)] => e.eval(ctx),
            [Part::Text(t)] => Ok(Value::String(t.clone())),
            parts => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Text(t) => out.push_str(t),
                        Part::Expr(_, e) => match e.eval(ctx)? {
                            Value::String(s) => out.push_str(&s),
                            Value::Number(n) => out.push_str(&n.to_string()),
                            Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
                            Value::Null => {
                                return Err(EvalError(format!(
                                    "`${{{}}}` is null inside the text {:?}",
                                    e.source(),
                                    self.src
                                )))
                            }
                            _ => {
                                return Err(EvalError(format!(
                                    "`${{{}}}` is a list or an object, which cannot be put in the text {:?}",
                                    e.source(),
                                    self.src
                                )))
                            }
                        },
                    }
                }
                Ok(Value::String(out))
            }
        }
    }

    /// The expressions inside.
    pub fn exprs(&self) -> Vec<&Expr> {
        self.exprs_with_offsets()
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// The expressions inside, each with the byte offset of its source in the template.
    pub fn exprs_with_offsets(&self) -> Vec<(usize, &Expr)> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Expr(o, e) => Some((*o, e)),
                Part::Text(_) => None,
            })
            .collect()
    }

    /// The text, when the template has no expressions (with `$${` unescaped).
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The expression, when the template is exactly one `${expr}`.
    pub fn single_expr(&self) -> Option<&Expr> {
        match self.parts.as_slice() {
            [Part::Expr(_, e)] => Some(e),
            _ => None,
        }
    }
}

/// Byte offset of the `}` closing an expression that starts at `start`,
/// skipping quoted strings (which may contain `}`).
fn find_close(src: &str, start: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for (k, &b) in src.as_bytes()[start..].iter().enumerate() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'\'' | b'"' => quote = Some(b),
                b'}' => return Some(start + k),
                _ => {}
            },
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({"inputs": {"user": "a@contoso.com", "n": 3, "ok": true, "loc": null,
                          "list": [1]}})
    }

    fn render(src: &str) -> Result<Value, EvalError> {
        Template::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .render(&ctx())
    }

    #[test]
    fn whole_expression_keeps_its_type() {
        assert_eq!(render("${inputs.loc}"), Ok(Value::Null));
        assert_eq!(render("${inputs.ok}"), Ok(json!(true)));
        assert_eq!(render("${inputs.n}"), Ok(json!(3)));
        assert_eq!(render("${inputs.user}"), Ok(json!("a@contoso.com")));
        assert_eq!(render("${ null }"), Ok(Value::Null));
    }

    #[test]
    fn mixed_text_concatenates() {
        assert_eq!(
            render("user ${inputs.user}"),
            Ok(json!("user a@contoso.com"))
        );
        assert_eq!(render("${inputs.n}-${inputs.ok}"), Ok(json!("3-true")));
        assert_eq!(render("plain"), Ok(json!("plain")));
        assert_eq!(render(""), Ok(json!("")));
        assert_eq!(render("cost $5"), Ok(json!("cost $5")));
        assert_eq!(render("$${inputs.user}"), Ok(json!("${inputs.user}")));
        assert_eq!(render("a$${b} ${inputs.n}"), Ok(json!("a${b} 3")));
        assert_eq!(render("${'}'}!"), Ok(json!("}!")));
        let err = render("loc ${inputs.loc}");
        assert!(matches!(err, Err(EvalError(m)) if m.contains("`${inputs.loc}` is null")));
        assert!(render("x ${inputs.list}").is_err());
    }

    #[test]
    fn literal_and_exprs() {
        let t = Template::parse("a $${x} b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.literal(), Some("a ${x} b"));
        assert!(t.exprs().is_empty());
        let t = Template::parse("x${inputs.user}y${inputs.n}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.literal(), None);
        let offs: Vec<usize> = t.exprs_with_offsets().iter().map(|(o, _)| *o).collect();
        assert_eq!(offs, vec![3, 18]);
        assert_eq!(t.exprs()[1].source(), "inputs.n");
        assert!(t.single_expr().is_none());
        assert_eq!(t.source(), "x${inputs.user}y${inputs.n}");
    }

    #[test]
    fn parse_errors_have_offsets_in_the_template() {
        let e = Template::parse("abc ${inputs.user").err();
        assert_eq!(e.as_ref().map(|e| e.offset), Some(4));
        assert!(e.is_some_and(|e| e.message.contains("unterminated")));
        let e = Template::parse("ab ${a ==}").err();
        assert_eq!(e.as_ref().map(|e| e.offset), Some(9));
        let e = Template::parse("${ }").err();
        assert!(e.is_some_and(|e| e.message.contains("empty")));
    }
}

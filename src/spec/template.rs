//! Templated arguments: `${expr}` inside strings.
//!
//! CONTRACT (implemented by the spec work).

use serde_json::Value;

use super::expr::{EvalError, Expr, ExprError};

/// A string with `${expr}` parts. A template that is exactly one `${expr}`
/// renders to the expression's value (so `null` and booleans survive);
/// otherwise parts are rendered as text and concatenated.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    src: String,
}

impl Template {
    /// Parse a template.
    pub fn parse(src: &str) -> Result<Template, ExprError> {
        Ok(Template {
            src: src.to_string(),
        })
    }
    /// Source text.
    pub fn source(&self) -> &str {
        &self.src
    }
    /// Render against a context.
    pub fn render(&self, _ctx: &Value) -> Result<Value, EvalError> {
        Ok(Value::String(self.src.clone()))
    }
    /// The expressions inside.
    pub fn exprs(&self) -> Vec<&Expr> {
        Vec::new()
    }
}

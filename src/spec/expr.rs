//! Conditions: a small, safe expression language over JSON values.
//!
//! CONTRACT (implemented by the spec work): see `Expr` methods.

use serde_json::Value;

/// A parse error: byte `offset` into the expression source and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// Byte offset into the source where the problem is.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// An evaluation error (type mismatch and the like).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    src: String,
}

impl Expr {
    /// Parse `src`.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        Ok(Expr {
            src: src.to_string(),
        })
    }
    /// The source text.
    pub fn source(&self) -> &str {
        &self.src
    }
    /// Evaluate against `ctx` (a JSON object whose keys are the roots: inputs, steps, obs).
    pub fn eval(&self, _ctx: &Value) -> Result<Value, EvalError> {
        Ok(Value::Null)
    }
    /// Evaluate to a boolean (error if the result is not a boolean).
    pub fn eval_bool(&self, ctx: &Value) -> Result<bool, EvalError> {
        match self.eval(ctx)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError(format!("expected true or false, got {other}"))),
        }
    }
    /// Every variable path the expression reads, root first (`["inputs","user"]`).
    pub fn paths(&self) -> Vec<Vec<String>> {
        Vec::new()
    }
}

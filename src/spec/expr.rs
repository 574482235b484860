//! Conditions: a small, safe expression language over JSON values.
//!
//! Used by `when:` and `wait.until:` and inside `${…}` templates.
//!
//! # Syntax
//! ```text
//! expr    := or
//! or      := and (("||" | "or") and)*
//! and     := not (("&&" | "and") not)*
//! not     := ("!" | "not") not | cmp
//! cmp     := postfix (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in" | "!in") postfix)?
//! postfix := primary ("." ident | "[" expr "]")*
//! primary := null | true | false | number | string | "[" (expr ("," expr)*)? "]"
//!          | ident "(" args ")" | ident | "(" expr ")"
//! ident   := [A-Za-z_][A-Za-z0-9_-]*
//! ```
//! `!`/`not` bind looser than comparisons (as Python's `not`): `!a == b` is
//! `!(a == b)`. Comparisons do not chain. There is no arithmetic, which is why
//! identifiers may contain hyphens (`steps.remove-dr-number.output`).
//!
//! # Semantics
//! - Navigation is null-safe: a missing member, an out-of-range index or a member
//!   of a non-object is `null`.
//! - `==`/`!=` compare any values (numbers by value: `1 == 1.0`).
//! - `<`, `<=`, `>`, `>=` compare number with number or string with string;
//!   anything else is an [`EvalError`].
//! - `x in y`: element of a list, substring of a string, key of an object; `x in null`
//!   is false. `x not in y` (or `x !in y`) is `!(x in y)`.
//! - `&&`/`||` short-circuit; their operands must be booleans (`null` counts as false).
//! - Functions: `len(x)`, `empty(x)`, `lower(s)`, `upper(s)`, `starts_with(s, p)`,
//!   `ends_with(s, p)`, `contains(x, y)` (same as `y in x`), and over lists of
//!   objects `where(list, field, value)` (the objects whose `field` equals
//!   `value`) and `pluck(list, field)` (each object's `field`); both read a
//!   `null` list as empty.
//!
//! Hostile input cannot exhaust the stack: sources are limited to
//! [`MAX_LEN`] bytes and nesting to [`MAX_DEPTH`] levels.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Number, Value};

/// Longest accepted expression source, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest accepted nesting (parentheses, lists, calls, indexes, negations).
pub const MAX_DEPTH: usize = 64;

/// A parse error: byte `offset` into the expression source and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// Byte offset into the source where the problem is.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl ExprError {
    fn new(offset: usize, message: impl Into<String>) -> ExprError {
        ExprError {
            offset,
            message: message.into(),
        }
    }
}

/// An evaluation error (type mismatch and the like).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// A variable path read by an expression, with where it starts in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarRef {
    /// Byte offset of the root identifier in the source.
    pub offset: usize,
    /// The statically known segments, root first (`["steps", "inspect", "output"]`).
    /// Literal indexes appear as their text (`a[0]` → `["a", "0"]`); the path stops
    /// at the first computed index.
    pub path: Vec<String>,
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    src: String,
    root: Node,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.src)
    }
}

impl Expr {
    /// Parse `src`.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        if src.len() > MAX_LEN {
            return Err(ExprError::new(
                MAX_LEN,
                format!(
                    "expression too long ({} bytes, at most {MAX_LEN})",
                    src.len()
                ),
            ));
        }
        let tokens = lex(src)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            depth: 0,
        };
        let root = p.expr()?;
        let t = p.peek();
        if t.tok != Tok::Eof {
            // `!` and `not` are one token: name the one written.
            let what = match t.tok {
                Tok::Not if src[t.offset..].starts_with("not") => {
                    "`not` (it negates what follows it; write `x not in y` or `not (x == y)`)"
                        .to_string()
                }
                Tok::Not => {
                    "`!` (it negates what follows it; write `x !in y` or `!(x == y)`)".to_string()
                }
                ref other => other.to_string(),
            };
            return Err(ExprError::new(
                t.offset,
                format!("unexpected {what} after the end of the expression"),
            ));
        }
        Ok(Expr {
            src: src.to_string(),
            root,
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Evaluate against `ctx`: a JSON object whose keys are the roots (inputs,
    /// steps, obs), or any [`Scope`] that builds them on demand.
    pub fn eval(&self, ctx: &dyn Scope) -> Result<Value, EvalError> {
        eval(&self.root, ctx)
    }

    /// Evaluate to a boolean: `null` is false, anything else but a boolean is an error.
    pub fn eval_bool(&self, ctx: &dyn Scope) -> Result<bool, EvalError> {
        match self.eval(ctx)? {
            Value::Bool(b) => Ok(b),
            Value::Null => Ok(false),
            other => Err(EvalError(format!(
                "condition `{}` must be true or false, got {}",
                self.src,
                describe(&other)
            ))),
        }
    }

    /// Every variable path the expression reads, root first (`["inputs","user"]`).
    pub fn paths(&self) -> Vec<Vec<String>> {
        self.var_refs().into_iter().map(|r| r.path).collect()
    }

    /// Every variable path the expression reads, with source offsets (for messages).
    pub fn var_refs(&self) -> Vec<VarRef> {
        let mut out = Vec::new();
        collect_refs(&self.root, &mut out);
        out
    }

    /// Text literals an input is compared with (`inputs.x == 'a'`, `'a' != inputs.x`,
    /// `inputs.x in ['a', 'b']`), as (input name, literal, offset of `inputs`), so
    /// that a misspelt value of an input with declared `values` is caught at load.
    pub fn input_literals(&self) -> Vec<(String, String, usize)> {
        let mut out = Vec::new();
        collect_input_literals(&self.root, &mut out);
        out
    }
}

/// `inputs.<name>` as (name, offset), if `node` is exactly that.
fn as_input(node: &Node) -> Option<(&str, usize)> {
    match node {
        Node::Access(base, chain) => match (base.as_ref(), chain.as_slice()) {
            (Node::Var(root, offset), [Access::Field(name)]) if root == "inputs" => {
                Some((name, *offset))
            }
            _ => None,
        },
        _ => None,
    }
}

fn collect_input_literals(node: &Node, out: &mut Vec<(String, String, usize)>) {
    match node {
        Node::Cmp(op, a, b) => {
            let text = |n: &Node| match n {
                Node::Lit(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            };
            let found = match op {
                CmpOp::Eq | CmpOp::Ne => as_input(a)
                    .map(|i| (i, text(b)))
                    .or_else(|| as_input(b).map(|i| (i, text(a)))),
                CmpOp::In => as_input(a).map(|i| {
                    let lits = match b.as_ref() {
                        Node::List(items) => items.iter().flat_map(text).collect(),
                        _ => Vec::new(),
                    };
                    (i, lits)
                }),
                _ => None,
            };
            if let Some(((name, offset), lits)) = found {
                for l in lits {
                    out.push((name.to_string(), l, offset));
                }
            }
            collect_input_literals(a, out);
            collect_input_literals(b, out);
        }
        Node::List(items) | Node::And(items) | Node::Or(items) | Node::Call(_, items) => {
            for i in items {
                collect_input_literals(i, out);
            }
        }
        Node::Not(inner) => collect_input_literals(inner, out),
        Node::Access(base, chain) => {
            collect_input_literals(base, out);
            for a in chain {
                if let Access::Index(i) = a {
                    collect_input_literals(i, out);
                }
            }
        }
        Node::Lit(_) | Node::Var(..) => {}
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Null,
    True,
    False,
    Num(Number),
    Str(String),
    Ident(String),
    Not,
    And,
    Or,
    In,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Null => f.write_str("`null`"),
            Tok::True => f.write_str("`true`"),
            Tok::False => f.write_str("`false`"),
            Tok::Num(n) => write!(f, "number {n}"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Not => f.write_str("`!`"),
            Tok::And => f.write_str("`&&`"),
            Tok::Or => f.write_str("`||`"),
            Tok::In => f.write_str("`in`"),
            Tok::Eq => f.write_str("`==`"),
            Tok::Ne => f.write_str("`!=`"),
            Tok::Lt => f.write_str("`<`"),
            Tok::Le => f.write_str("`<=`"),
            Tok::Gt => f.write_str("`>`"),
            Tok::Ge => f.write_str("`>=`"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Dot => f.write_str("`.`"),
            Tok::Eof => f.write_str("end of expression"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    offset: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn lex(src: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let simple = |tok: Tok, len: usize, out: &mut Vec<Token>| {
            out.push(Token { tok, offset: start });
            start + len
        };
        let next = bytes.get(i + 1).copied();
        i = match c {
            b' ' | b'\t' | b'\n' | b'\r' => i + 1,
            b'(' => simple(Tok::LParen, 1, &mut out),
            b')' => simple(Tok::RParen, 1, &mut out),
            b'[' => simple(Tok::LBracket, 1, &mut out),
            b']' => simple(Tok::RBracket, 1, &mut out),
            b',' => simple(Tok::Comma, 1, &mut out),
            b'.' => simple(Tok::Dot, 1, &mut out),
            b'=' if next == Some(b'=') => simple(Tok::Eq, 2, &mut out),
            b'=' => return Err(ExprError::new(i, "unexpected `=` (compare with `==`)")),
            b'!' if next == Some(b'=') => simple(Tok::Ne, 2, &mut out),
            b'!' => simple(Tok::Not, 1, &mut out),
            b'<' if next == Some(b'=') => simple(Tok::Le, 2, &mut out),
            b'<' => simple(Tok::Lt, 1, &mut out),
            b'>' if next == Some(b'=') => simple(Tok::Ge, 2, &mut out),
            b'>' => simple(Tok::Gt, 1, &mut out),
            b'&' if next == Some(b'&') => simple(Tok::And, 2, &mut out),
            b'&' => return Err(ExprError::new(i, "unexpected `&` (write `&&` or `and`)")),
            b'|' if next == Some(b'|') => simple(Tok::Or, 2, &mut out),
            b'|' => return Err(ExprError::new(i, "unexpected `|` (write `||` or `or`)")),
            b'\'' | b'"' => {
                let (s, end) = lex_string(src, i)?;
                out.push(Token {
                    tok: Tok::Str(s),
                    offset: start,
                });
                end
            }
            b'0'..=b'9' => lex_number(src, i, &mut out)?,
            b'-' if next.is_some_and(|n| n.is_ascii_digit()) => lex_number(src, i, &mut out)?,
            b'-' => {
                return Err(ExprError::new(
                    i,
                    "unexpected `-` (there is no arithmetic; numbers are written -1)",
                ))
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('\0');
                if !is_ident_start(ch) {
                    return Err(ExprError::new(i, format!("unexpected character {ch:?}")));
                }
                let mut end = i;
                for (k, ch) in src[i..].char_indices() {
                    if is_ident_char(ch) {
                        end = i + k + ch.len_utf8();
                    } else {
                        break;
                    }
                }
                let word = &src[i..end];
                let tok = match word {
                    "null" => Tok::Null,
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "not" => Tok::Not,
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "in" => Tok::In,
                    _ => Tok::Ident(word.to_string()),
                };
                out.push(Token { tok, offset: start });
                end
            }
        };
    }
    out.push(Token {
        tok: Tok::Eof,
        offset: src.len(),
    });
    Ok(out)
}

fn lex_string(src: &str, start: usize) -> Result<(String, usize), ExprError> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        let at = start + 1 + k;
        if c == quote {
            return Ok((out, at + 1));
        }
        if c == '\\' {
            match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '\'')) => out.push('\''),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => {
                    return Err(ExprError::new(
                        at,
                        format!("unknown escape `\\{other}` (use \\\\, \\', \\\", \\n or \\t)"),
                    ))
                }
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err(ExprError::new(start, "unterminated string"))
}

fn lex_number(src: &str, start: usize, out: &mut Vec<Token>) -> Result<usize, ExprError> {
    let b = src.as_bytes();
    let mut i = start;
    if b[i] == b'-' {
        i += 1;
    }
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut float = false;
    if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
        float = true;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            float = true;
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
        return Err(ExprError::new(
            start,
            format!("invalid number `{}`", &src[start..=i]),
        ));
    }
    let text = &src[start..i];
    let num = if float {
        None
    } else {
        text.parse::<i64>().ok().map(Number::from)
    };
    let num = match num {
        Some(n) => n,
        None => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .ok_or_else(|| ExprError::new(start, format!("invalid number `{text}`")))?,
    };
    out.push(Token {
        tok: Tok::Num(num),
        offset: start,
    });
    Ok(i)
}

// ---------------------------------------------------------------- AST + parser

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Len,
    Empty,
    Lower,
    Upper,
    StartsWith,
    EndsWith,
    Contains,
    Where,
    Pluck,
}

impl Func {
    fn lookup(name: &str) -> Option<(Func, usize)> {
        Some(match name {
            "len" => (Func::Len, 1),
            "empty" => (Func::Empty, 1),
            "lower" => (Func::Lower, 1),
            "upper" => (Func::Upper, 1),
            "starts_with" => (Func::StartsWith, 2),
            "ends_with" => (Func::EndsWith, 2),
            "contains" => (Func::Contains, 2),
            "where" => (Func::Where, 3),
            "pluck" => (Func::Pluck, 2),
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Func::Len => "len",
            Func::Empty => "empty",
            Func::Lower => "lower",
            Func::Upper => "upper",
            Func::StartsWith => "starts_with",
            Func::EndsWith => "ends_with",
            Func::Contains => "contains",
            Func::Where => "where",
            Func::Pluck => "pluck",
        }
    }
}

const FUNCTIONS: &str = "len, empty, lower, upper, starts_with, ends_with, contains, where, pluck";

#[derive(Clone, Debug, PartialEq)]
enum Access {
    Field(String),
    Index(Node),
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Lit(Value),
    List(Vec<Node>),
    /// A root variable, with its source offset.
    Var(String, usize),
    /// A chain of member accesses on a base.
    Access(Box<Node>, Vec<Access>),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }
    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn eat(&mut self, tok: &Tok) -> bool {
        if &self.peek().tok == tok {
            self.bump();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, tok: Tok, what: &str) -> Result<Token, ExprError> {
        let t = self.peek().clone();
        if t.tok == tok {
            Ok(self.bump())
        } else {
            Err(ExprError::new(
                t.offset,
                format!("expected {what}, found {}", t.tok),
            ))
        }
    }
    fn enter(&mut self, offset: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(
                offset,
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }
    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// A nested full expression (counts toward the depth limit).
    fn nested(&mut self) -> Result<Node, ExprError> {
        // Point at the bracket, parenthesis or comma that opened this level.
        let offset = self.tokens[self.pos.saturating_sub(1)].offset;
        self.enter(offset)?;
        let n = self.expr();
        self.leave();
        n
    }

    fn expr(&mut self) -> Result<Node, ExprError> {
        let first = self.and()?;
        if self.peek().tok != Tok::Or {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat(&Tok::Or) {
            items.push(self.and()?);
        }
        Ok(Node::Or(items))
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let first = self.not()?;
        if self.peek().tok != Tok::And {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat(&Tok::And) {
            items.push(self.not()?);
        }
        Ok(Node::And(items))
    }

    fn not(&mut self) -> Result<Node, ExprError> {
        if self.peek().tok == Tok::Not {
            let t = self.bump();
            self.enter(t.offset)?;
            let inner = self.not();
            self.leave();
            return Ok(Node::Not(Box::new(inner?)));
        }
        self.cmp()
    }

    /// Whether the next tokens are `not in` / `!in`.
    fn at_not_in(&self) -> bool {
        self.peek().tok == Tok::Not
            && self
                .tokens
                .get(self.pos + 1)
                .is_some_and(|t| t.tok == Tok::In)
    }

    fn cmp(&mut self) -> Result<Node, ExprError> {
        let left = self.postfix()?;
        // `x not in y` is `!(x in y)`, as in Python.
        let negated = self.at_not_in();
        if negated {
            self.bump();
        }
        let op = match self.peek().tok {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::In => CmpOp::In,
            _ => return Ok(left),
        };
        self.bump();
        let right = self.postfix()?;
        let t = self.peek();
        if matches!(
            t.tok,
            Tok::Eq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge | Tok::In
        ) || self.at_not_in()
        {
            return Err(ExprError::new(
                t.offset,
                "comparisons cannot be chained; use parentheses and `&&`",
            ));
        }
        let cmp = Node::Cmp(op, Box::new(left), Box::new(right));
        Ok(if negated {
            Node::Not(Box::new(cmp))
        } else {
            cmp
        })
    }

    fn postfix(&mut self) -> Result<Node, ExprError> {
        let base = self.primary()?;
        let mut chain = Vec::new();
        loop {
            match self.peek().tok {
                Tok::Dot => {
                    self.bump();
                    let t = self.bump();
                    match t.tok {
                        Tok::Ident(name) => chain.push(Access::Field(name)),
                        // Keywords are fine as member names (`obs.in`, `x.null`).
                        Tok::Null
                        | Tok::True
                        | Tok::False
                        | Tok::Not
                        | Tok::And
                        | Tok::Or
                        | Tok::In => chain.push(Access::Field(keyword_text(&t.tok).to_string())),
                        other => {
                            return Err(ExprError::new(
                                t.offset,
                                format!("expected a member name after `.`, found {other}"),
                            ))
                        }
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    let idx = self.nested()?;
                    self.expect(Tok::RBracket, "`]`")?;
                    chain.push(Access::Index(idx));
                }
                _ => break,
            }
        }
        if chain.is_empty() {
            Ok(base)
        } else {
            Ok(Node::Access(Box::new(base), chain))
        }
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let t = self.bump();
        match t.tok {
            Tok::Null => Ok(Node::Lit(Value::Null)),
            Tok::True => Ok(Node::Lit(Value::Bool(true))),
            Tok::False => Ok(Node::Lit(Value::Bool(false))),
            Tok::Num(n) => Ok(Node::Lit(Value::Number(n))),
            Tok::Str(s) => Ok(Node::Lit(Value::String(s))),
            Tok::LParen => {
                let inner = self.nested()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(inner)
            }
            Tok::LBracket => {
                let mut items = Vec::new();
                if !self.eat(&Tok::RBracket) {
                    loop {
                        items.push(self.nested()?);
                        if self.eat(&Tok::Comma) {
                            if self.eat(&Tok::RBracket) {
                                break;
                            }
                            continue;
                        }
                        self.expect(Tok::RBracket, "`,` or `]`")?;
                        break;
                    }
                }
                Ok(Node::List(items))
            }
            Tok::Ident(name) => {
                if self.peek().tok != Tok::LParen {
                    return Ok(Node::Var(name, t.offset));
                }
                let Some((func, arity)) = Func::lookup(&name) else {
                    return Err(ExprError::new(
                        t.offset,
                        format!("unknown function `{name}` (known: {FUNCTIONS})"),
                    ));
                };
                self.bump();
                let mut args = Vec::new();
                if !self.eat(&Tok::RParen) {
                    loop {
                        args.push(self.nested()?);
                        if self.eat(&Tok::Comma) {
                            continue;
                        }
                        self.expect(Tok::RParen, "`,` or `)`")?;
                        break;
                    }
                }
                if args.len() != arity {
                    return Err(ExprError::new(
                        t.offset,
                        format!(
                            "`{name}` takes {arity} argument{}, got {}",
                            if arity == 1 { "" } else { "s" },
                            args.len()
                        ),
                    ));
                }
                Ok(Node::Call(func, args))
            }
            Tok::Eof => Err(ExprError::new(
                t.offset,
                "expected a value, found end of expression",
            )),
            other => Err(ExprError::new(
                t.offset,
                format!("expected a value, found {other}"),
            )),
        }
    }
}

fn keyword_text(t: &Tok) -> &'static str {
    match t {
        Tok::Null => "null",
        Tok::True => "true",
        Tok::False => "false",
        Tok::Not => "not",
        Tok::And => "and",
        Tok::Or => "or",
        Tok::In => "in",
        _ => "",
    }
}

fn collect_refs(node: &Node, out: &mut Vec<VarRef>) {
    match node {
        Node::Lit(_) => {}
        Node::Var(name, offset) => out.push(VarRef {
            offset: *offset,
            path: vec![name.clone()],
        }),
        Node::Access(base, chain) => {
            if let Node::Var(name, offset) = base.as_ref() {
                let mut path = vec![name.clone()];
                let mut open = true;
                for a in chain {
                    if !open {
                        break;
                    }
                    match a {
                        Access::Field(f) => path.push(f.clone()),
                        Access::Index(Node::Lit(Value::String(s))) => path.push(s.clone()),
                        Access::Index(Node::Lit(Value::Number(n))) => path.push(n.to_string()),
                        Access::Index(_) => open = false,
                    }
                }
                out.push(VarRef {
                    offset: *offset,
                    path,
                });
            } else {
                collect_refs(base, out);
            }
            for a in chain {
                if let Access::Index(i) = a {
                    collect_refs(i, out);
                }
            }
        }
        Node::List(items) | Node::And(items) | Node::Or(items) | Node::Call(_, items) => {
            for i in items {
                collect_refs(i, out);
            }
        }
        Node::Not(inner) => collect_refs(inner, out),
        Node::Cmp(_, a, b) => {
            collect_refs(a, out);
            collect_refs(b, out);
        }
    }
}

// ---------------------------------------------------------------- evaluation

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn member<'a>(v: &'a Value, key: &Value) -> Result<&'a Value, EvalError> {
    static NULL: Value = Value::Null;
    Ok(match (v, key) {
        (Value::Object(m), Value::String(k)) => m.get(k).unwrap_or(&NULL),
        (Value::Array(a), Value::Number(n)) => {
            let idx = n
                .as_i64()
                .ok_or_else(|| EvalError(format!("list index must be a whole number, got {n}")))?;
            let idx = if idx < 0 { a.len() as i64 + idx } else { idx };
            if idx < 0 {
                &NULL
            } else {
                a.get(idx as usize).unwrap_or(&NULL)
            }
        }
        (_, Value::Null) => &NULL,
        (Value::Array(_), k) => {
            return Err(EvalError(format!(
                "a list is indexed by a number, not {}",
                describe(k)
            )))
        }
        (Value::Object(_), k) => {
            return Err(EvalError(format!(
                "an object is indexed by a string, not {}",
                describe(k)
            )))
        }
        _ => &NULL,
    })
}

/// Where an expression finds its roots (`inputs`, `steps`, `obs`, …). The
/// engine's scope builds a root only when an expression names it, so a wait's
/// `obs.x == 'y'` copies nothing of the instance.
pub trait Scope {
    /// The value of the root `name`, if there is one.
    fn var(&self, name: &str) -> Option<&Value>;
}

impl Scope for Value {
    fn var(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

fn eval(node: &Node, ctx: &dyn Scope) -> Result<Value, EvalError> {
    match node {
        Node::Lit(v) => Ok(v.clone()),
        Node::List(items) => Ok(Value::Array(
            items
                .iter()
                .map(|i| eval(i, ctx))
                .collect::<Result<_, _>>()?,
        )),
        Node::Var(name, _) => Ok(ctx.var(name).cloned().unwrap_or(Value::Null)),
        Node::Access(base, chain) => {
            // Navigate by reference as long as possible: no copies of large objects.
            let owned;
            let mut cur: &Value = match base.as_ref() {
                Node::Var(name, _) => ctx.var(name).unwrap_or(&Value::Null),
                other => {
                    owned = eval(other, ctx)?;
                    &owned
                }
            };
            for a in chain {
                cur = match a {
                    Access::Field(f) => match cur {
                        Value::Object(m) => m.get(f).unwrap_or(&Value::Null),
                        _ => &Value::Null,
                    },
                    Access::Index(i) => {
                        let k = eval(i, ctx)?;
                        member(cur, &k)?
                    }
                };
            }
            Ok(cur.clone())
        }
        Node::Not(inner) => Ok(Value::Bool(!truth(&eval(inner, ctx)?, "`!`")?)),
        Node::And(items) => {
            for i in items {
                if !truth(&eval(i, ctx)?, "`&&`")? {
                    return Ok(Value::Bool(false));
                }
            }
            Ok(Value::Bool(true))
        }
        Node::Or(items) => {
            for i in items {
                if truth(&eval(i, ctx)?, "`||`")? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        Node::Cmp(op, a, b) => {
            let a = eval(a, ctx)?;
            let b = eval(b, ctx)?;
            compare(*op, &a, &b).map(Value::Bool)
        }
        Node::Call(f, args) => {
            let vals: Vec<Value> = args
                .iter()
                .map(|a| eval(a, ctx))
                .collect::<Result<_, _>>()?;
            call(*f, &vals)
        }
    }
}

fn truth(v: &Value, op: &str) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        other => Err(EvalError(format!(
            "{op} needs true or false, got {}",
            describe(other)
        ))),
    }
}

/// Equality with numbers compared by value (`1 == 1.0`), recursively.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

fn num_cmp(x: &Number, y: &Number) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return Some(a.cmp(&b));
    }
    x.as_f64()?.partial_cmp(&y.as_f64()?)
}

fn compare(op: CmpOp, a: &Value, b: &Value) -> Result<bool, EvalError> {
    let ord = |a: &Value, b: &Value| -> Result<Ordering, EvalError> {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                num_cmp(x, y).ok_or_else(|| EvalError(format!("cannot order {x} and {y}")))
            }
            (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
            _ => Err(EvalError(format!(
                "cannot order {} and {} (only number with number or string with string)",
                describe(a),
                describe(b)
            ))),
        }
    };
    Ok(match op {
        CmpOp::Eq => equal(a, b),
        CmpOp::Ne => !equal(a, b),
        CmpOp::Lt => ord(a, b)? == Ordering::Less,
        CmpOp::Le => ord(a, b)? != Ordering::Greater,
        CmpOp::Gt => ord(a, b)? == Ordering::Greater,
        CmpOp::Ge => ord(a, b)? != Ordering::Less,
        CmpOp::In => contains(b, a)?,
    })
}

/// `needle in haystack`.
fn contains(haystack: &Value, needle: &Value) -> Result<bool, EvalError> {
    match (haystack, needle) {
        (Value::Null, _) => Ok(false),
        (Value::Array(items), n) => Ok(items.iter().any(|i| equal(i, n))),
        (Value::String(s), Value::String(n)) => Ok(s.contains(n.as_str())),
        (Value::String(_), Value::Null) => Ok(false),
        (Value::Object(m), Value::String(k)) => Ok(m.contains_key(k)),
        (Value::Object(_), Value::Null) => Ok(false),
        (h, n) => Err(EvalError(format!(
            "cannot look for {} in {}",
            describe(n),
            describe(h)
        ))),
    }
}

fn call(f: Func, args: &[Value]) -> Result<Value, EvalError> {
    let bad = |v: &Value| EvalError(format!("`{}` cannot take {}", f.name(), describe(v)));
    let text = |v: &'_ Value| -> Result<Option<String>, EvalError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            other => Err(bad(other)),
        }
    };
    Ok(match f {
        Func::Len => Value::from(match &args[0] {
            Value::Null => 0,
            Value::String(s) => s.chars().count(),
            Value::Array(a) => a.len(),
            Value::Object(m) => m.len(),
            other => return Err(bad(other)),
        }),
        Func::Empty => Value::Bool(match &args[0] {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(m) => m.is_empty(),
            _ => false,
        }),
        Func::Lower => text(&args[0])?.map_or(Value::Null, |s| Value::String(s.to_lowercase())),
        Func::Upper => text(&args[0])?.map_or(Value::Null, |s| Value::String(s.to_uppercase())),
        Func::StartsWith | Func::EndsWith => match (text(&args[0])?, text(&args[1])?) {
            (Some(s), Some(p)) => Value::Bool(if f == Func::StartsWith {
                s.starts_with(&p)
            } else {
                s.ends_with(&p)
            }),
            _ => Value::Bool(false),
        },
        Func::Contains => Value::Bool(contains(&args[0], &args[1])?),
        Func::Where | Func::Pluck => {
            let items: &[Value] = match &args[0] {
                Value::Null => &[],
                Value::Array(a) => a,
                other => return Err(bad(other)),
            };
            let Some(field) = text(&args[1])? else {
                return Err(bad(&args[1]));
            };
            let get = |v: &Value| match v {
                Value::Object(m) => m.get(&field).cloned().unwrap_or(Value::Null),
                _ => Value::Null,
            };
            Value::Array(if f == Func::Where {
                items
                    .iter()
                    .filter(|v| equal(&get(v), &args[2]))
                    .cloned()
                    .collect()
            } else {
                items.iter().map(get).collect()
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "inputs": {"user": "Alice@Contoso.com", "number": "+14255550100", "location_id": null},
            "steps": {
                "inspect": {"output": {"id": "u-1", "line_uri": "+14255550100",
                    "on_prem_line_uri": null, "features": ["Teams", "PhoneSystem"], "n": 3}},
                "remove-dr-number": {"observed": {"line_uri": null}}
            },
            "obs": {"number_type": "OperatorConnect", "activation_state": "Activated"}
        })
    }

    fn ev(src: &str) -> Value {
        match Expr::parse(src) {
            Ok(e) => e.eval(&ctx()).unwrap_or_else(|err| panic!("{src}: {err}")),
            Err(e) => panic!("{src}: parse error at {}: {e}", e.offset),
        }
    }

    fn eval_err(src: &str) -> String {
        match Expr::parse(src).map(|e| e.eval(&ctx())) {
            Ok(Err(e)) => e.0,
            other => panic!("{src}: expected an evaluation error, got {other:?}"),
        }
    }

    fn parse_err(src: &str) -> (usize, String) {
        match Expr::parse(src) {
            Err(e) => (e.offset, e.message),
            Ok(e) => panic!("{src}: expected a parse error, got {e:?}"),
        }
    }

    #[test]
    fn literals() {
        assert_eq!(ev("null"), Value::Null);
        assert_eq!(ev("true"), json!(true));
        assert_eq!(ev("false"), json!(false));
        assert_eq!(ev("42"), json!(42));
        assert_eq!(ev("-7"), json!(-7));
        assert_eq!(ev("1.5"), json!(1.5));
        assert_eq!(ev("2e3"), json!(2000.0));
        assert_eq!(ev("'it\\'s'"), json!("it's"));
        assert_eq!(ev(r#""a\"b\\c\nd""#), json!("a\"b\\c\nd"));
        assert_eq!(ev("[1, 'a', null]"), json!([1, "a", null]));
        assert_eq!(ev("[]"), json!([]));
        assert_eq!(ev("[1,]"), json!([1]));
    }

    #[test]
    fn paths_and_null_safe_navigation() {
        assert_eq!(ev("inputs.number"), json!("+14255550100"));
        assert_eq!(ev("steps.inspect.output.id"), json!("u-1"));
        assert_eq!(
            ev("steps['remove-dr-number'].observed"),
            json!({"line_uri": null})
        );
        assert_eq!(ev("steps.remove-dr-number.observed.line_uri"), Value::Null);
        assert_eq!(ev("steps.inspect.output.features[1]"), json!("PhoneSystem"));
        assert_eq!(
            ev("steps.inspect.output.features[-1]"),
            json!("PhoneSystem")
        );
        assert_eq!(ev("steps.inspect.output.features[9]"), Value::Null);
        assert_eq!(ev("steps.nope.output.id"), Value::Null);
        assert_eq!(ev("inputs.user.deeper.still"), Value::Null);
        assert_eq!(ev("nothing"), Value::Null);
        assert_eq!(ev("obs['number_type']"), json!("OperatorConnect"));
        assert_eq!(ev("[10, 20][1]"), json!(20));
    }

    #[test]
    fn comparisons() {
        assert_eq!(ev("inputs.location_id == null"), json!(true));
        assert_eq!(
            ev("steps.inspect.output.on_prem_line_uri != null"),
            json!(false)
        );
        assert_eq!(ev("obs.number_type == 'OperatorConnect'"), json!(true));
        assert_eq!(ev("1 == 1.0"), json!(true));
        assert_eq!(ev("[1, 'a'] == [1.0, 'a']"), json!(true));
        assert_eq!(ev("steps.inspect.output.n > 2"), json!(true));
        assert_eq!(ev("steps.inspect.output.n <= 2"), json!(false));
        assert_eq!(ev("'abc' < 'abd'"), json!(true));
        assert_eq!(ev("3 >= 3"), json!(true));
        assert_eq!(ev("'x' == 1"), json!(false));
        assert!(eval_err("'a' < 1").contains("cannot order"));
        assert!(eval_err("null < 1").contains("cannot order"));
    }

    #[test]
    fn membership() {
        assert_eq!(ev("'Teams' in steps.inspect.output.features"), json!(true));
        assert_eq!(ev("'Voice' in steps.inspect.output.features"), json!(false));
        assert_eq!(ev("'555' in inputs.number"), json!(true));
        assert_eq!(ev("'id' in steps.inspect.output"), json!(true));
        assert_eq!(ev("'x' in null"), json!(false));
        assert_eq!(
            ev("obs.activation_state in ['Activated', 'AssignmentPending']"),
            json!(true)
        );
        assert!(eval_err("1 in 'abc'").contains("cannot look for"));
    }

    #[test]
    fn logic_and_short_circuit() {
        assert_eq!(ev("true && false"), json!(false));
        assert_eq!(ev("true and true"), json!(true));
        assert_eq!(ev("false || true"), json!(true));
        assert_eq!(ev("false or false"), json!(false));
        assert_eq!(ev("!true"), json!(false));
        assert_eq!(ev("not false"), json!(true));
        assert_eq!(ev("!inputs.location_id == 'x'"), json!(true));
        assert_eq!(ev("not not true"), json!(true));
        assert_eq!(ev("null && true"), json!(false));
        assert_eq!(ev("true || 'x' < 1"), json!(true));
        assert_eq!(ev("false && 'x' < 1"), json!(false));
        assert_eq!(ev("(true || false) && !(1 == 2)"), json!(true));
        assert!(eval_err("1 && true").contains("`&&` needs true or false"));
        assert!(eval_err("'a' || true").contains("`||`"));
    }

    #[test]
    fn functions() {
        assert_eq!(ev("len(inputs.number)"), json!(12));
        assert_eq!(ev("len(steps.inspect.output.features)"), json!(2));
        assert_eq!(ev("len(null)"), json!(0));
        assert_eq!(
            ev("empty(null) && empty('') && empty([]) && empty(obs.none)"),
            json!(true)
        );
        assert_eq!(ev("empty(inputs)"), json!(false));
        assert_eq!(ev("empty(0)"), json!(false));
        assert_eq!(ev("lower(inputs.user)"), json!("alice@contoso.com"));
        assert_eq!(ev("upper('ab')"), json!("AB"));
        assert_eq!(ev("lower(null)"), Value::Null);
        assert_eq!(ev("starts_with(inputs.number, '+1425')"), json!(true));
        assert_eq!(ev("ends_with(inputs.user, '.com')"), json!(true));
        assert_eq!(ev("starts_with(null, 'x')"), json!(false));
        assert_eq!(
            ev("contains(steps.inspect.output.features, 'Teams')"),
            json!(true)
        );
        assert_eq!(ev("contains('abc', 'bc')"), json!(true));
        assert!(eval_err("len(1)").contains("`len` cannot take number 1"));
        assert!(eval_err("lower(1)").contains("`lower`"));
    }

    #[test]
    fn list_of_object_functions() {
        let c = json!({"la": [
            {"sku": "MCOEV", "assigned_via": "direct", "group": null},
            {"sku": "MCOPSTN1", "assigned_via": "group", "group": "CP users"},
            {"sku": "MCOPSTN1", "assigned_via": "direct", "group": null},
            "not an object"
        ]});
        let ev = |src: &str| {
            Expr::parse(src)
                .unwrap_or_else(|e| panic!("{src}: {e}"))
                .eval(&c)
        };
        assert_eq!(
            ev("pluck(where(la, 'sku', 'MCOPSTN1'), 'assigned_via')"),
            Ok(json!(["group", "direct"]))
        );
        assert_eq!(
            ev("pluck(where(where(la, 'sku', 'MCOPSTN1'), 'assigned_via', 'group'), 'group')"),
            Ok(json!(["CP users"]))
        );
        assert_eq!(ev("empty(where(la, 'sku', 'MCOPSTN2'))"), Ok(json!(true)));
        assert_eq!(ev("len(where(la, 'group', null))"), Ok(json!(3)));
        assert_eq!(ev("where(nothing, 'sku', 'x')"), Ok(json!([])));
        assert_eq!(ev("pluck(nothing, 'sku')"), Ok(json!([])));
        assert!(
            matches!(ev("where('abc', 'sku', 'x')"), Err(EvalError(m)) if m.contains("`where`"))
        );
        assert!(matches!(ev("pluck(la, 1)"), Err(EvalError(m)) if m.contains("`pluck`")));
        assert!(
            Expr::parse("where(la, 'sku')").is_err_and(|e| e.message.contains("takes 3 arguments"))
        );
    }

    #[test]
    fn eval_bool_rules() {
        let c = ctx();
        let p = |s: &str| Expr::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p("obs.missing").eval_bool(&c), Ok(false));
        assert_eq!(p("1 == 1").eval_bool(&c), Ok(true));
        let err = p("inputs.user").eval_bool(&c);
        assert!(matches!(err, Err(EvalError(m)) if m.contains("must be true or false")));
    }

    #[test]
    fn parse_errors_carry_offsets() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "expected a value"),
            ("obs.x ==", 8, "expected a value, found end"),
            ("obs.x = 1", 6, "compare with `==`"),
            ("a & b", 2, "`&&`"),
            ("a | b", 2, "`||`"),
            ("(a == b", 7, "expected `)`"),
            ("'open", 0, "unterminated string"),
            ("'a\\q'", 2, "unknown escape"),
            ("foo(1)", 0, "unknown function `foo`"),
            ("len(1, 2)", 0, "takes 1 argument, got 2"),
            ("starts_with('a')", 0, "takes 2 arguments"),
            ("a == b == c", 7, "cannot be chained"),
            ("a b", 2, "unexpected `b`"),
            ("a.", 2, "expected a member name"),
            ("a[1", 3, "expected `]`"),
            ("x - y", 2, "no arithmetic"),
            ("12ab", 0, "invalid number"),
            ("a @ b", 2, "unexpected character '@'"),
            ("[1 2]", 3, "expected `,` or `]`"),
            ("é", 0, "unexpected character"),
        ];
        for (src, offset, msg) in cases {
            let (o, m) = parse_err(src);
            assert_eq!(o, *offset, "{src}: {m}");
            assert!(m.contains(msg), "{src}: {m:?} lacks {msg:?}");
        }
    }

    #[test]
    fn limits_protect_the_stack() {
        let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse_err(&deep).1.contains("too long"));
        let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
        let (offset, msg) = parse_err(&deep);
        assert!(msg.contains("nested too deeply"));
        assert_eq!(offset, MAX_DEPTH);
        let nots = "!".repeat(1000) + "true";
        assert!(parse_err(&nots).1.contains("nested too deeply"));
        let lists = "[".repeat(1000);
        assert!(parse_err(&lists).1.contains("nested too deeply"));
        // Long flat chains are fine and evaluate without recursion per link.
        let chain = vec!["true"; 500].join(" && ");
        assert_eq!(ev(&chain), json!(true));
        let members = format!("obs{}", ".a".repeat(1000));
        assert_eq!(ev(&members), Value::Null);
        let ok = format!("{}true{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(ev(&ok), json!(true));
    }

    #[test]
    fn var_paths() {
        let e = Expr::parse(
            "steps.inspect.output.on_prem_line_uri != null && inputs['number'] in obs.list[0] \
             && lower(inputs.user) == x[inputs.k].y",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let p = e.paths();
        assert_eq!(
            p,
            vec![
                vec!["steps", "inspect", "output", "on_prem_line_uri"],
                vec!["inputs", "number"],
                vec!["obs", "list", "0"],
                vec!["inputs", "user"],
                vec!["x"],
                vec!["inputs", "k"],
            ]
        );
        let r = e.var_refs();
        assert_eq!(r[0].offset, 0);
        assert_eq!(r[1].offset, 49);
        assert_eq!(Expr::parse("1 == 2").map(|e| e.paths()), Ok(vec![]));
    }

    #[test]
    fn literals_compared_with_inputs() {
        let e = Expr::parse(
            "inputs.mode == 'a' || 'b' != inputs.mode || inputs.mode in ['c', 1] \
             || !(inputs.other == 'd') || inputs.mode.x == 'no' || obs.y == 'no'",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let lits: Vec<(String, String)> = e
            .input_literals()
            .into_iter()
            .map(|(n, l, _)| (n, l))
            .collect();
        let want: Vec<(String, String)> =
            [("mode", "a"), ("mode", "b"), ("mode", "c"), ("other", "d")]
                .iter()
                .map(|(n, l)| (n.to_string(), l.to_string()))
                .collect();
        assert_eq!(lits, want);
        assert_eq!(e.input_literals()[0].2, 0);
    }

    #[test]
    fn hyphenated_identifiers_and_keywords_as_members() {
        assert_eq!(
            ev("steps.remove-dr-number.observed"),
            json!({"line_uri": null})
        );
        let e = Expr::parse("obs.in && obs.null").map(|e| e.paths());
        assert_eq!(
            e,
            Ok(vec![
                vec!["obs".to_string(), "in".to_string()],
                vec!["obs".to_string(), "null".to_string()]
            ])
        );
    }
}

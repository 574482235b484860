//! Cross-field rules of a workflow, checked after serde has enforced the shape.
//!
//! Every problem is collected (not just the first) with the position of the node
//! it concerns. See [`validate_workflow`] for the rules.

use std::collections::HashMap;
use std::time::Duration;

use super::diag::Diagnostic;
use super::expr::Expr;
use super::limits::{human_duration, MAX_ATTEMPTS, MAX_BACKOFF, MAX_INPUTS, MAX_STEPS, MAX_VALUES};
use super::locate::{join_index, join_key, PosMap};
use super::model::{ActionSpec, InputSpec, InputType, RetrySpec, WaitSpec, Workflow};
use super::template::Template;
use crate::backend::{NumberType, OperationKind, ParamType};

/// Shortest accepted wait timeout.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest accepted wait timeout with `fast_polls: true`.
pub const MIN_FAST_TIMEOUT: Duration = Duration::from_secs(1);
/// Shortest accepted first poll interval.
pub const MIN_POLL: Duration = Duration::from_secs(1);
/// Shortest accepted first poll interval with `fast_polls: true`.
pub const MIN_FAST_POLL: Duration = Duration::from_millis(100);
/// Longest accepted wait timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// Whether `s` looks like a user principal name: `local@domain.tld`, no spaces or
/// quotes-and-semicolons, at most 64 characters before the `@` and 255 in all.
pub fn is_upn(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-'!#$&*/=?^`{|}~".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    s.len() <= 255 && local_ok && domain_ok
}

/// Whether `s` is an E.164 number: `+`, then 8 to 15 digits, the first not 0.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Whether `s` is a valid identifier for an input or a step reference.
fn is_input_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}

/// Whether `s` is a valid step id: `[a-z0-9][a-z0-9_-]*`.
pub fn is_step_id(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_lowercase() || f.is_ascii_digit())
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-')
}

/// Check a subject's value of input `name` as a run file's subjects are
/// checked (length, type, `values`); `Err` has the message. An empty value
/// is no value: the caller decides whether the input may lack one.
pub fn check_subject_value(spec: &InputSpec, name: &str, value: &str) -> Result<(), String> {
    if value.len() > super::limits::MAX_VALUE_BYTES {
        return Err(format!(
            "the value of input `{name}` is {} bytes long; at most {}",
            value.len(),
            super::limits::MAX_VALUE_BYTES
        ));
    }
    check_input_value(spec.ty, name, value).and_then(|()| check_input_values(spec, name, value))
}

/// Check a literal value against an input type; `Err` has the message.
pub fn check_input_value(ty: InputType, name: &str, value: &str) -> Result<(), String> {
    match ty {
        InputType::Upn if !is_upn(value) => Err(format!(
            "`{value}` is not a user principal name (user@domain) for input `{name}`"
        )),
        InputType::E164 if !is_e164(value) => Err(format!(
            "`{value}` is not an E.164 number (+ and 8 to 15 digits) for input `{name}`"
        )),
        _ => Ok(()),
    }
}

/// Check a literal value against an input's declared `values`; `Err` has the message.
pub fn check_input_values(spec: &InputSpec, name: &str, value: &str) -> Result<(), String> {
    match &spec.values {
        Some(values) if !values.iter().any(|v| v == value) => Err(format!(
            "`{value}` is not a value of input `{name}` (one of: {})",
            values.join(", ")
        )),
        _ => Ok(()),
    }
}

fn fmt_dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Where an expression may look.
struct Scope {
    /// Index of the step the expression belongs to; only earlier steps are visible.
    step: usize,
    /// `obs` is visible (only in `wait.until`).
    obs: bool,
}

struct Checker<'a> {
    wf: &'a Workflow,
    map: &'a PosMap,
    file: &'a str,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&mut self, path: &str, msg: impl Into<String>) {
        let p = self.map.at(path);
        self.out
            .push(Diagnostic::new(self.file, p.line, p.col, msg.into()));
    }
    fn at_key(&mut self, path: &str, msg: impl Into<String>) {
        let p = self.map.key_at(path);
        self.out
            .push(Diagnostic::new(self.file, p.line, p.col, msg.into()));
    }

    fn check_expr(&mut self, expr: &Expr, base: usize, path: &str, scope: &Scope, what: &str) {
        for r in expr.var_refs() {
            let problem = self.check_ref(&r.path, scope, what);
            if let Some(msg) = problem {
                let p = self.map.at_offset(path, base + r.offset);
                self.out
                    .push(Diagnostic::new(self.file, p.line, p.col, msg));
            }
        }
        // A misspelt value would make the condition silently false for everyone.
        for (name, lit, offset) in expr.input_literals() {
            if let Some(spec) = self.wf.inputs.get(&name) {
                if let Err(msg) = check_input_values(spec, &name, &lit) {
                    let p = self.map.at_offset(path, base + offset);
                    self.out.push(Diagnostic::new(
                        self.file,
                        p.line,
                        p.col,
                        format!("compared with {lit:?}: {msg}"),
                    ));
                }
            }
        }
    }

    fn check_template(&mut self, t: &Template, path: &str, scope: &Scope) {
        for (offset, e) in t.exprs_with_offsets() {
            self.check_expr(e, offset, path, scope, "an argument");
        }
    }

    fn check_wait(&mut self, w: &WaitSpec, wp: &str, step: usize) {
        let op_path = join_key(wp, "observe.op");
        if !w.observe.op.info().observation {
            let obs: Vec<&str> = OperationKind::ALL
                .iter()
                .filter(|k| k.info().observation)
                .map(|k| k.info().name)
                .collect();
            self.at(
                &op_path,
                format!(
                    "a wait must observe, but {} changes the tenant (observations: {})",
                    w.observe.op,
                    obs.join(", ")
                ),
            );
        }
        self.check_action(
            &w.observe,
            &join_key(wp, "observe"),
            &Scope { step, obs: false },
        );
        let until = Scope { step, obs: true };
        self.check_expr(&w.until, 0, &join_key(wp, "until"), &until, "`wait.until`");
        let tp = join_key(wp, "timeout");
        let (min_timeout, min_poll) = if self.wf.fast_polls {
            (MIN_FAST_TIMEOUT, MIN_FAST_POLL)
        } else {
            (MIN_TIMEOUT, MIN_POLL)
        };
        if w.timeout < min_timeout || w.timeout > MAX_TIMEOUT {
            let hint = if self.wf.fast_polls {
                ""
            } else {
                "; from 1s with `fast_polls: true`"
            };
            self.at(
                &tp,
                format!(
                    "timeout {} is out of range ({} to 30d{hint})",
                    fmt_dur(w.timeout),
                    fmt_dur(min_timeout)
                ),
            );
        }
        if w.expected > w.timeout {
            self.at(
                &join_key(wp, "expected"),
                format!(
                    "expected {} is longer than the timeout {}",
                    fmt_dur(w.expected),
                    fmt_dur(w.timeout)
                ),
            );
        }
        let pp = join_key(wp, "poll");
        if !(w.poll.factor >= 1.0 && w.poll.factor.is_finite() && w.poll.factor <= 100.0) {
            self.at(
                &join_key(&pp, "factor"),
                format!(
                    "poll.factor must be between 1 and 100, got {}",
                    w.poll.factor
                ),
            );
        }
        if w.poll.initial < min_poll {
            let msg = if self.wf.fast_polls {
                "poll.initial must be at least 100ms".to_string()
            } else {
                "poll.initial must be at least 1s (100ms with `fast_polls: true` at the top of the workflow)".to_string()
            };
            self.at(&join_key(&pp, "initial"), msg);
        }
        if w.poll.max > MAX_BACKOFF {
            self.at(
                &join_key(&pp, "max"),
                format!(
                    "poll.max ({}) is longer than {}",
                    human_duration(w.poll.max),
                    human_duration(MAX_BACKOFF)
                ),
            );
        }
        if w.poll.initial > w.poll.max {
            self.at(
                &join_key(&pp, "initial"),
                format!(
                    "poll.initial ({}) is longer than poll.max ({})",
                    fmt_dur(w.poll.initial),
                    fmt_dur(w.poll.max)
                ),
            );
        }
    }

    fn check_retry(&mut self, r: &RetrySpec, rp: &str) {
        if !(1..=MAX_ATTEMPTS).contains(&r.attempts) {
            self.at(
                &join_key(rp, "attempts"),
                format!(
                    "retry.attempts must be between 1 and {MAX_ATTEMPTS} (it counts the first attempt), got {}",
                    r.attempts
                ),
            );
        }
        if r.initial > r.max {
            self.at(
                &join_key(rp, "initial"),
                format!(
                    "retry.initial ({}) is longer than retry.max ({})",
                    fmt_dur(r.initial),
                    fmt_dur(r.max)
                ),
            );
        }
        // The first repeat only: the list may be long.
        let mut seen = std::collections::HashSet::new();
        if let Some(i) = r.on.iter().position(|k| !seen.insert(*k)) {
            self.at(
                &join_index(&join_key(rp, "on"), i),
                format!("retry.on lists `{}` twice", r.on[i].as_str()),
            );
        }
        if r.max > MAX_BACKOFF {
            self.at(
                &join_key(rp, "max"),
                format!(
                    "retry.max ({}) is longer than {}",
                    human_duration(r.max),
                    human_duration(MAX_BACKOFF)
                ),
            );
        }
    }

    fn check_ref(&self, path: &[String], scope: &Scope, what: &str) -> Option<String> {
        let root = path.first()?;
        match root.as_str() {
            "inputs" => {
                let name = path.get(1)?;
                if self.wf.inputs.contains_key(name) {
                    return None;
                }
                let known: Vec<&str> = self.wf.inputs.keys().map(String::as_str).collect();
                Some(format!(
                    "unknown input `{name}` in `inputs.{name}` (declared: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            }
            "steps" => {
                let id = path.get(1)?;
                match self.wf.step_index(id) {
                    None => Some(format!("unknown step `{id}` in `steps.{id}`")),
                    Some(i) if i >= scope.step => Some(format!(
                        "`steps.{id}` refers to {} step; only earlier steps can be read",
                        if i == scope.step { "this" } else { "a later" }
                    )),
                    Some(_) => match path.get(2).map(String::as_str) {
                        None | Some("output") | Some("observed") => None,
                        Some(other) => Some(format!(
                            "`steps.{id}.{other}`: a step has `output` (what its action returned) \
                             and `observed` (the last observation of its wait)"
                        )),
                    },
                }
            }
            // The engine puts the subject's name (its `subject` input) in every context.
            "subject" => path.get(1).map(|m| {
                format!("`subject` is the subject's name, a text: it has no member `{m}`")
            }),
            "obs" if scope.obs => None,
            "obs" => Some(format!(
                "`obs` is only available in `wait.until`, not in {what}"
            )),
            other => Some(format!(
                "unknown variable `{other}` (expressions read `inputs.…`, `steps.<id>.output`, \
                 `steps.<id>.observed`, `subject` and, in `wait.until`, `obs.…`)"
            )),
        }
    }

    fn check_action(&mut self, a: &ActionSpec, path: &str, scope: &Scope) {
        let info = a.op.info();
        let args_path = join_key(path, "args");
        for (name, t) in &a.args {
            let arg_path = join_key(&args_path, name);
            let Some(param) = info.params.iter().find(|p| p.name == name) else {
                let known: Vec<&str> = info.params.iter().map(|p| p.name).collect();
                self.at_key(
                    &arg_path,
                    format!(
                        "unknown argument `{name}` for {} (it takes {})",
                        info.name,
                        known.join(", ")
                    ),
                );
                continue;
            };
            self.check_template(t, &arg_path, scope);
            if let Some(lit) = t.literal() {
                let ok = match param.ty {
                    ParamType::Upn => is_upn(lit),
                    ParamType::E164 => is_e164(lit),
                    ParamType::NumberType => [
                        NumberType::DirectRouting,
                        NumberType::CallingPlan,
                        NumberType::OperatorConnect,
                    ]
                    .iter()
                    .any(|n| n.as_str() == lit),
                    ParamType::String => true,
                    ParamType::Bool => matches!(lit, "true" | "false"),
                };
                if !ok {
                    let expected = match param.ty {
                        ParamType::Upn => "a user principal name (user@domain)",
                        ParamType::E164 => "an E.164 number (+ and 8 to 15 digits)",
                        ParamType::NumberType => "DirectRouting, CallingPlan or OperatorConnect",
                        ParamType::String => "text",
                        ParamType::Bool => "true or false",
                    };
                    self.at(
                        &arg_path,
                        format!(
                            "argument `{name}` of {}: `{lit}` is not {expected}",
                            info.name
                        ),
                    );
                }
            } else if let Some(e) = t.single_expr() {
                if e.source().trim() == "null" && param.required {
                    self.at(
                        &arg_path,
                        format!(
                            "argument `{name}` of {} is required and cannot be null",
                            info.name
                        ),
                    );
                }
                // `${inputs.x}` feeding a typed parameter: the types must agree.
                let paths = e.paths();
                if let [p] = paths.as_slice() {
                    if p.len() == 2
                        && p[0] == "inputs"
                        && e.source().trim() == format!("inputs.{}", p[1])
                    {
                        if let Some(input) = self.wf.inputs.get(&p[1]) {
                            let clash = matches!(
                                (param.ty, input.ty),
                                (ParamType::Upn, InputType::E164)
                                    | (ParamType::E164, InputType::Upn)
                            );
                            if clash {
                                self.at(
                                    &arg_path,
                                    format!(
                                        "argument `{name}` of {} expects {} but input `{}` is {}",
                                        info.name,
                                        if param.ty == ParamType::Upn {
                                            "a upn"
                                        } else {
                                            "an e164 number"
                                        },
                                        p[1],
                                        input.ty
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
        for p in info.params.iter().filter(|p| p.required) {
            if !a.args.contains_key(p.name) {
                let where_ = if self.map.has(&args_path) {
                    args_path.clone()
                } else {
                    join_key(path, "op")
                };
                self.at_key(
                    &where_,
                    format!("missing required argument `{}` for {}", p.name, info.name),
                );
            }
        }
    }
}

/// Check a deserialized workflow; returns every problem found.
///
/// Rules: `name` non-empty; input names are identifiers; `subject` names a
/// required input; step ids unique and `[a-z0-9][a-z0-9_-]*`; each step has a
/// gate, an action or a wait; `retry.attempts` in 1..=100, `initial ≤ max ≤ 24h`;
/// waits observe an observation operation, `poll.factor` in 1..=100,
/// `poll.initial ≤ poll.max ≤ 24h`,
/// `expected ≤ timeout`, timeout within 1m..30d; action arguments match the
/// operation catalog (no unknown, none missing, literals of the right type);
/// every expression reads only declared inputs, earlier steps' `output` /
/// `observed`, `subject`, and `obs` inside `wait.until`.
pub fn validate_workflow(wf: &Workflow, map: &PosMap, file: &str) -> Vec<Diagnostic> {
    let mut c = Checker {
        wf,
        map,
        file,
        out: Vec::new(),
    };
    if wf.name.trim().is_empty() {
        c.at("name", "the workflow name must not be empty");
    }
    // Checks below compare steps with steps and inputs with inputs: bound them first.
    if wf.steps.len() > MAX_STEPS {
        c.at(
            "steps",
            format!(
                "{} steps; a workflow has at most {MAX_STEPS}",
                wf.steps.len()
            ),
        );
    }
    if wf.inputs.len() > MAX_INPUTS {
        c.at(
            "inputs",
            format!(
                "{} inputs; a workflow has at most {MAX_INPUTS}",
                wf.inputs.len()
            ),
        );
    }
    if !c.out.is_empty() {
        return c.out;
    }
    for (name, spec) in &wf.inputs {
        if !is_input_name(name) {
            c.at_key(
                &join_key("inputs", name),
                format!("input name `{name}` must match [A-Za-z_][A-Za-z0-9_-]*"),
            );
        }
        if let Some(values) = &spec.values {
            let vp = join_key(&join_key("inputs", name), "values");
            if spec.ty != InputType::String {
                c.at(
                    &vp,
                    format!("`values` applies to string inputs; `{name}` is {}", spec.ty),
                );
            }
            if values.is_empty() {
                c.at(&vp, format!("input `{name}` lists no values"));
            }
            if values.len() > MAX_VALUES {
                c.at(
                    &vp,
                    format!(
                        "input `{name}` lists {} values; at most {MAX_VALUES}",
                        values.len()
                    ),
                );
                continue;
            }
            for (i, v) in values.iter().enumerate() {
                if v.trim().is_empty() || values[..i].contains(v) {
                    c.at(
                        &join_index(&vp, i),
                        format!("value {v:?} of input `{name}` is empty or listed twice"),
                    );
                }
            }
        }
    }
    match wf.inputs.get(&wf.subject) {
        None => {
            let known: Vec<&str> = wf.inputs.keys().map(String::as_str).collect();
            c.at(
                "subject",
                format!(
                    "subject `{}` is not an input (declared: {})",
                    wf.subject,
                    known.join(", ")
                ),
            );
        }
        Some(i) if i.optional => c.at(
            "subject",
            format!("subject input `{}` must not be optional", wf.subject),
        ),
        Some(_) => {}
    }
    if wf.steps.is_empty() {
        c.at("steps", "a workflow needs at least one step");
    }

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, step) in wf.steps.iter().enumerate() {
        let sp = format!("steps[{i}]");
        let id_path = join_key(&sp, "id");
        if !is_step_id(&step.id) {
            c.at(
                &id_path,
                format!("step id `{}` must match [a-z0-9][a-z0-9_-]*", step.id),
            );
        }
        if let Some(first) = seen.get(step.id.as_str()) {
            let line = map.at(&format!("steps[{first}].id")).line;
            c.at(
                &id_path,
                format!(
                    "duplicate step id `{}` (first used on line {line})",
                    step.id
                ),
            );
        } else {
            seen.insert(&step.id, i);
        }
        if step.gate.is_none()
            && step.action.is_none()
            && step.wait.is_none()
            && step.manual.is_none()
            && step.check.is_none()
        {
            c.at(
                &sp,
                format!(
                    "step `{}` has nothing to do: give it a check, a gate, a manual task, an action or a wait",
                    step.id
                ),
            );
        }
        let plain = Scope {
            step: i,
            obs: false,
        };
        if let Some(w) = &step.when {
            c.check_expr(w, 0, &join_key(&sp, "when"), &plain, "`when`");
        }
        if let Some(g) = &step.gate {
            match (&g.approval, &g.signal) {
                (Some(a), None) if !a.trim().is_empty() => {}
                (None, Some(sig)) if is_step_id(sig) => {}
                (None, Some(sig)) => c.at(
                    &join_key(&sp, "gate.signal"),
                    format!("signal name `{sig}` must match [a-z0-9][a-z0-9_-]*"),
                ),
                (Some(_), Some(_)) => c.at(
                    &join_key(&sp, "gate"),
                    "a gate is either an `approval` or a `signal`, not both",
                ),
                _ => c.at(
                    &join_key(&sp, "gate"),
                    "a gate needs an `approval` text saying what the approver confirms, or a `signal` name",
                ),
            }
        }
        if let Some(chk) = &step.check {
            let cp = join_key(&sp, "check");
            c.check_expr(
                &chk.require,
                0,
                &join_key(&cp, "require"),
                &plain,
                "`check.require`",
            );
            c.check_template(&chk.message, &join_key(&cp, "message"), &plain);
        }
        if let Some(m) = &step.manual {
            c.check_template(
                &m.instructions,
                &join_key(&sp, "manual.instructions"),
                &plain,
            );
            if step.action.is_some() {
                c.at(
                    &join_key(&sp, "manual"),
                    "a step is either a manual task or an action, not both",
                );
            }
        }
        if let Some(comp) = &step.compensate {
            let cp = join_key(&sp, "compensate");
            let own = Scope {
                step: i + 1,
                obs: false,
            };
            if comp.op.info().observation {
                c.at(
                    &join_key(&cp, "op"),
                    format!(
                        "a compensation must change the tenant, but {} only reads",
                        comp.op
                    ),
                );
            }
            c.check_action(&comp.action(), &cp, &own);
            c.check_retry(&comp.retry, &join_key(&cp, "retry"));
            if let Some(w) = &comp.wait {
                c.check_wait(w, &join_key(&cp, "wait"), i + 1);
            }
        }
        if let Some(a) = &step.action {
            c.check_action(a, &join_key(&sp, "action"), &plain);
        }
        let rp = join_key(&sp, "retry");
        c.check_retry(&step.retry, &rp);
        if let Some(w) = &step.wait {
            c.check_wait(w, &join_key(&sp, "wait"), i);
            if let Some(sig) = &w.signal {
                if !is_step_id(sig) {
                    c.at(
                        &join_key(&sp, "wait.signal"),
                        format!("signal name `{sig}` must match [a-z0-9][a-z0-9_-]*"),
                    );
                }
            }
        }
    }
    c.out
}

/// Where the workflow polls faster than once a second (`fast_polls: true`):
/// a warning for runs on a real tenant, which syncs in minutes and throttles
/// callers that poll it that often.
pub fn fast_poll_warnings(wf: &Workflow, map: &PosMap, file: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, step) in wf.steps.iter().enumerate() {
        let sp = join_index("steps", i);
        let waits = [
            step.wait.as_ref().map(|w| (w, join_key(&sp, "wait"))),
            step.compensate
                .as_ref()
                .and_then(|c| c.wait.as_ref())
                .map(|w| (w, join_key(&sp, "compensate.wait"))),
        ];
        for (w, wp) in waits.into_iter().flatten() {
            if w.poll.initial < MIN_POLL {
                let p = map.at(&join_key(&wp, "poll.initial"));
                out.push(Diagnostic::new(
                    file,
                    p.line,
                    p.col,
                    format!(
                        "step {} polls every {} on a real tenant, which syncs in minutes and \
                         throttles fast callers: poll.initial 1s or more is enough",
                        step.id,
                        fmt_dur(w.poll.initial)
                    ),
                ));
            }
        }
    }
    out
}

/// Warnings (not errors) about a valid workflow: a `check` placed after a step
/// that takes the number out of service although it reads nothing that step or
/// a later one produces. Refused there, the subject is already out of service;
/// refused before it, nothing would have changed.
pub fn outage_warnings(wf: &Workflow, map: &PosMap, file: &str) -> Vec<Diagnostic> {
    let outages: Vec<usize> = wf
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.action.as_ref().is_some_and(|a| a.op.info().outage))
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::new();
    for (c, step) in wf.steps.iter().enumerate() {
        let Some(check) = &step.check else { continue };
        let mut exprs: Vec<&Expr> = vec![&check.require];
        exprs.extend(step.when.iter());
        exprs.extend(check.message.exprs());
        // One past the last step it reads (0: only inputs); a computed
        // `steps[…]` may read any step, so it never warns.
        let mut first_free = 0;
        let mut reads_any = false;
        for e in exprs {
            for p in e.paths() {
                match (p.first().map(String::as_str), p.get(1)) {
                    (Some("steps"), Some(id)) => {
                        if let Some(i) = wf.step_index(id) {
                            first_free = first_free.max(i + 1);
                        }
                    }
                    (Some("steps"), None) => reads_any = true,
                    _ => {}
                }
            }
        }
        if reads_any {
            continue;
        }
        if let Some(&o) = outages.iter().find(|&&o| o >= first_free && o < c) {
            let p = map.key_at(&join_key(&format!("steps[{c}]"), "check"));
            out.push(Diagnostic::new(
                file,
                p.line,
                p.col,
                format!(
                    "this check could run before `{}`, which takes the number out of service",
                    wf.steps[o].id
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upns() {
        for ok in [
            "a@contoso.com",
            "first.last@sub.contoso.co.uk",
            "o'brien@x.io",
            "user0001@contoso.com",
        ] {
            assert!(is_upn(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@contoso.com",
            "a@.com",
            "a b@c.com",
            "x'; Remove-CsOnlineUser@c.com",
            "a@c..com",
            "a@-c.com",
        ] {
            assert!(!is_upn(bad), "{bad}");
        }
    }

    #[test]
    fn e164s() {
        for ok in ["+14255550100", "+4930123456", "+12345678"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "14255550100",
            "+1425",
            "+0425555010",
            "+1 425 555 0100",
            "+1234567890123456",
            "tel:+14255550100",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn step_ids() {
        assert!(is_step_id("remove-dr-number"));
        assert!(is_step_id("3a_x"));
        assert!(!is_step_id("Remove"));
        assert!(!is_step_id("-x"));
        assert!(!is_step_id(""));
    }
}

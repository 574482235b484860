//! Static checks of the PowerShell host script (`src/backend/powershell/host.ps1`).
//!
//! pwsh is not available where portflow is built, so the script is checked by
//! reading its syntax tree (tree-sitter-powershell): it parses cleanly, runs only
//! allowlisted commands plus one dynamic call of a cmdlet from its own table, that
//! table equals `ops::HOST_OPS`, and request values reach a cmdlet only through
//! the splat. Each checker is also run on hostile code to show it notices.
//! The golden replies in `tests/fixtures/powershell/` pin the reply shape.

use std::collections::BTreeSet;

use portflow::backend::powershell::ops::{host_op, HostOp, HOST_OPS};
use portflow::backend::powershell::protocol::{ascii_json, parse_line, Line, FRAME};
use portflow::backend::powershell::HOST_SCRIPT;
use serde_json::Value;
use tree_sitter::{Node, Parser, Tree};

/// Utility cmdlets the script may run. Keep it short: every entry must be used.
const ALLOWED_CMDLETS: &[&str] = &[
    "Set-StrictMode",
    "New-Object",
    "ConvertFrom-Json",
    "ConvertTo-Json",
    "Import-Module",
    "Get-Module",
    "Get-Command",
    "Get-FileHash",
    "Sort-Object",
    "Select-Object",
    "Connect-MicrosoftTeams",
    "Disconnect-MicrosoftTeams",
];

/// The script's own functions (exactly the ones it defines).
const SCRIPT_FUNCTIONS: &[&str] = &[
    "Get-Field",
    "Get-Text",
    "Get-Flag",
    "Get-TextList",
    "Get-EnabledCapability",
    "Test-ReturnedError",
    "Find-CorrelationId",
    "Hide-Secret",
    "New-Failure",
    "New-HostFailure",
    "New-RecordFailure",
    "New-ReturnedFailure",
    "ConvertTo-AsciiJson",
    "Send-Reply",
    "Get-ModuleVersion",
    "Get-LoadedVersion",
    "Invoke-Hello",
    "Invoke-Connect",
    "Invoke-Call",
];

/// Commands that run text as code or start other code; named in failures.
const FORBIDDEN_COMMANDS: &[&str] = &[
    "Invoke-Expression",
    "iex",
    "Invoke-Command",
    "icm",
    "Add-Type",
    "Start-Process",
    "saps",
    "start",
    "New-PSSession",
    "Enter-PSSession",
    "Start-Job",
    "Invoke-Item",
    "ii",
];

/// Methods that turn text into code or run it.
const FORBIDDEN_MEMBERS: &[&str] = &[
    "AddScript",
    "AddCommand",
    "InvokeScript",
    "NewScriptBlock",
    "Create",
];

/// What the utilities that load code or make objects may be given: the first
/// argument that is not a `-Parameter`.
const UTILITY_TARGETS: &[(&str, &[&str])] = &[
    (
        "New-Object",
        &[
            "System.Text.UTF8Encoding",
            "System.Text.StringBuilder",
            "System.Collections.ArrayList",
        ],
    ),
    ("Import-Module", &["MicrosoftTeams", "SkypeForBusiness"]),
    ("Get-Command", &["'Move-CsUser'"]),
];

/// The one dynamic call: the cmdlet name from the operation table.
const DYNAMIC_CALL: &str = "$spec.Cmdlet";

struct Script<'s> {
    src: &'s str,
    tree: Tree,
}

impl<'s> Script<'s> {
    fn parse(src: &'s str) -> Script<'s> {
        let mut parser = Parser::new();
        parser
            .set_language(&tree_sitter_powershell::LANGUAGE.into())
            .expect("the PowerShell grammar loads");
        let tree = parser.parse(src, None).expect("tree-sitter returns a tree");
        Script { src, tree }
    }

    fn text(&self, n: Node) -> &'s str {
        &self.src[n.byte_range()]
    }

    /// `line:col` (1-based) of a node, for messages.
    fn at(&self, n: Node) -> String {
        let p = n.start_position();
        format!("{}:{}", p.row + 1, p.column + 1)
    }

    /// Every node, in document order.
    fn nodes(&self) -> Vec<Node<'_>> {
        descendants(self.tree.root_node())
    }
}

fn descendants(root: Node<'_>) -> Vec<Node<'_>> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        out.push(n);
        let mut cursor = n.walk();
        let kids: Vec<Node> = n.children(&mut cursor).collect();
        stack.extend(kids.into_iter().rev());
    }
    out
}

fn first_of_kind<'t>(root: Node<'t>, kind: &str) -> Option<Node<'t>> {
    descendants(root).into_iter().find(|n| n.kind() == kind)
}

fn child_of_kind<'t>(n: Node<'t>, kind: &str) -> Option<Node<'t>> {
    let mut cursor = n.walk();
    let found = n.children(&mut cursor).find(|c| c.kind() == kind);
    found
}

fn ancestors(n: Node<'_>) -> Vec<Node<'_>> {
    let mut out = Vec::new();
    let mut cur = n.parent();
    while let Some(p) = cur {
        out.push(p);
        cur = p.parent();
    }
    out
}

/// Whitespace runs as one space, for comparing statements.
fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn excerpt(s: &str) -> String {
    let one_line = norm(s);
    match one_line.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

fn eq_any(name: &str, list: &[&str]) -> bool {
    list.iter().any(|l| l.eq_ignore_ascii_case(name))
}

// ---- the checkers (each returns what it objects to) ----

/// ERROR and MISSING nodes.
fn syntax_errors(s: &Script) -> Vec<String> {
    s.nodes()
        .into_iter()
        .filter(|n| n.is_error() || n.is_missing())
        .map(|n| {
            let what = if n.is_missing() { "MISSING" } else { "ERROR" };
            format!("{} {what} near `{}`", s.at(n), excerpt(s.text(n)))
        })
        .collect()
}

/// Commands whose name is not allowlisted, that use `&`/`.` on anything but
/// the dynamic call, or whose name is built at run time.
fn command_violations(s: &Script, allowed: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for n in s.nodes().into_iter().filter(|n| n.kind() == "command") {
        let op = child_of_kind(n, "command_invokation_operator").map(|o| s.text(o));
        let Some(name) = n.child_by_field_name("command_name") else {
            out.push(format!("{} command without a name", s.at(n)));
            continue;
        };
        let text = s.text(name);
        match name.kind() {
            "command_name" => {
                if eq_any(text, FORBIDDEN_COMMANDS) {
                    out.push(format!("{} forbidden command `{text}`", s.at(n)));
                } else if !eq_any(text, allowed) {
                    out.push(format!("{} command `{text}` is not allowlisted", s.at(n)));
                }
                if let Some(op) = op {
                    out.push(format!(
                        "{} `{op} {text}`: only `& {DYNAMIC_CALL}` may use an invocation operator",
                        s.at(n)
                    ));
                }
            }
            "command_name_expr" => {
                if !(op == Some("&") && text == DYNAMIC_CALL) {
                    out.push(format!(
                        "{} dynamic command `{} {text}`: only `& {DYNAMIC_CALL}` is allowed",
                        s.at(n),
                        op.unwrap_or("")
                    ));
                }
            }
            other => out.push(format!("{} command name of kind {other}", s.at(n))),
        }
    }
    out
}

/// `New-Object`, `Import-Module` and `Get-Command` on anything but their
/// listed targets (a `[powershell]` made by name, a module from a path).
fn utility_target_violations(s: &Script) -> Vec<String> {
    let mut out = Vec::new();
    for n in s.nodes().into_iter().filter(|n| n.kind() == "command") {
        let Some(name) = n.child_by_field_name("command_name") else {
            continue;
        };
        let Some((_, targets)) = UTILITY_TARGETS
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(s.text(name)))
        else {
            continue;
        };
        let first = n.child_by_field_name("command_elements").and_then(|e| {
            let mut cursor = e.walk();
            let found = e
                .named_children(&mut cursor)
                .find(|a| !matches!(a.kind(), "command_argument_sep" | "command_parameter"));
            found
        });
        let target = first.map(|a| s.text(a)).unwrap_or("");
        if !targets.contains(&target) {
            out.push(format!(
                "{} `{}` on `{target}`, not one of {targets:?}",
                s.at(n),
                s.text(name)
            ));
        }
    }
    out
}

/// The `& $spec.Cmdlet` calls.
fn dynamic_calls<'t>(s: &'t Script) -> Vec<Node<'t>> {
    s.nodes()
        .into_iter()
        .filter(|n| n.kind() == "command")
        .filter(|n| {
            let op = child_of_kind(*n, "command_invokation_operator").map(|o| s.text(o));
            let name = n.child_by_field_name("command_name");
            op == Some("&")
                && name
                    .is_some_and(|c| c.kind() == "command_name_expr" && s.text(c) == DYNAMIC_CALL)
        })
        .collect()
}

/// Code from text by other routes: `[scriptblock]`/`[powershell]` type
/// literals (casts and static calls alike), `AddScript` and kin,
/// `$ExecutionContext`, and `.Invoke*()` on anything but `$spec.Project`.
fn forbidden_constructs(s: &Script) -> Vec<String> {
    let mut out = Vec::new();
    for n in s.nodes() {
        match n.kind() {
            "type_literal" => {
                let t = s.text(n).to_ascii_lowercase().replace(' ', "");
                if ["scriptblock", "powershell", "runspace"]
                    .iter()
                    .any(|b| t.contains(b))
                {
                    out.push(format!("{} type literal {}", s.at(n), s.text(n)));
                }
            }
            "variable" => {
                let v = s.text(n).to_ascii_lowercase();
                let v = v.trim_start_matches(['$', '@', '{']).trim_end_matches('}');
                if v.rsplit(':').next() == Some("executioncontext") {
                    out.push(format!("{} variable {}", s.at(n), s.text(n)));
                }
            }
            "invokation_expression" => {
                let Some(member) = child_of_kind(n, "member_name").map(|m| s.text(m)) else {
                    continue;
                };
                if eq_any(member, FORBIDDEN_MEMBERS) {
                    out.push(format!("{} method {member}", s.at(n)));
                }
                if member.to_ascii_lowercase().starts_with("invoke") {
                    let target = n.named_child(0).map(|t| s.text(t)).unwrap_or("");
                    if target != "$spec.Project" {
                        out.push(format!(
                            "{} `{target}.{member}()`: only $spec.Project is invoked",
                            s.at(n)
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn allowed_names() -> Vec<&'static str> {
    ALLOWED_CMDLETS
        .iter()
        .chain(SCRIPT_FUNCTIONS)
        .copied()
        .collect()
}

/// Every general check at once (what a hostile snippet must trip).
fn all_violations(s: &Script) -> Vec<String> {
    let mut v = syntax_errors(s);
    v.extend(command_violations(s, &allowed_names()));
    v.extend(utility_target_violations(s));
    v.extend(forbidden_constructs(s));
    v
}

// ---- the operation table ----

#[derive(Clone, Debug, PartialEq)]
struct OpRow {
    name: String,
    part: String,
    cmdlet: String,
    params: Vec<String>,
    fields: Vec<String>,
    many: bool,
}

impl From<&HostOp> for OpRow {
    fn from(op: &HostOp) -> OpRow {
        OpRow {
            name: op.name.into(),
            part: op.part.as_str().into(),
            cmdlet: op.cmdlet.into(),
            params: op.params.iter().map(|p| p.to_string()).collect(),
            fields: op.fields.iter().map(|f| f.to_string()).collect(),
            many: op.many,
        }
    }
}

/// `(key, value)` of each entry of a hash literal.
fn hash_entries<'t>(s: &Script, hash: Node<'t>) -> Vec<(String, Node<'t>)> {
    let Some(body) = child_of_kind(hash, "hash_literal_body") else {
        return Vec::new();
    };
    let mut cursor = body.walk();
    let entries: Vec<Node> = body
        .children(&mut cursor)
        .filter(|c| c.kind() == "hash_entry")
        .collect();
    entries
        .into_iter()
        .filter_map(|e| {
            let key = child_of_kind(e, "key_expression")?;
            let mut c = e.walk();
            let value = e
                .named_children(&mut c)
                .find(|v| v.kind() != "key_expression")?;
            Some((s.text(key).trim_matches(['\'', '"']).to_string(), value))
        })
        .collect()
}

/// A value that is exactly one single-quoted string: its content.
fn verbatim(s: &Script, value: Node) -> Result<String, String> {
    let text = s.text(value).trim();
    let lit = first_of_kind(value, "string_literal")
        .ok_or_else(|| format!("`{text}` is not a string"))?;
    let is_verbatim = child_of_kind(lit, "verbatim_string_characters").is_some();
    if !is_verbatim
        || s.text(lit) != text
        || text.len() < 2
        || text[1..text.len() - 1].contains('\'')
    {
        return Err(format!("`{text}` is not one single-quoted string"));
    }
    Ok(text[1..text.len() - 1].to_string())
}

/// The `$Operations` table as the script writes it.
fn script_operations(s: &Script) -> Result<Vec<OpRow>, String> {
    let assignments: Vec<Node> = s
        .nodes()
        .into_iter()
        .filter(|n| n.kind() == "assignment_expression")
        .filter(|n| {
            child_of_kind(*n, "left_assignment_expression")
                .is_some_and(|l| s.text(l).eq_ignore_ascii_case("$Operations"))
        })
        .collect();
    let [table] = assignments[..] else {
        return Err(format!(
            "$Operations is assigned {} times, not once",
            assignments.len()
        ));
    };
    let value = table
        .child_by_field_name("value")
        .ok_or("$Operations has no value")?;
    if !s.text(value).starts_with("@{") {
        return Err("$Operations is not a hash literal".into());
    }
    let hash =
        first_of_kind(value, "hash_literal_expression").ok_or("$Operations: no hash literal")?;
    let mut rows = Vec::new();
    for (name, op_value) in hash_entries(s, hash) {
        let err = |e: String| format!("{name}: {e}");
        if !s.text(op_value).starts_with("@{") {
            return Err(err("not a hash literal".into()));
        }
        let spec = first_of_kind(op_value, "hash_literal_expression")
            .ok_or_else(|| err("no hash literal".into()))?;
        let entries = hash_entries(s, spec);
        let keys: BTreeSet<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        let expected: BTreeSet<&str> = ["Part", "Cmdlet", "Params", "Many", "Project"].into();
        if keys != expected || entries.len() != expected.len() {
            return Err(err(format!("keys {keys:?}, expected {expected:?}")));
        }
        let get = |k: &str| {
            entries
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| *v)
                .ok_or_else(|| err(format!("no {k}")))
        };
        let part = verbatim(s, get("Part")?).map_err(err)?;
        let cmdlet = verbatim(s, get("Cmdlet")?).map_err(err)?;
        let params = params_of(s, get("Params")?).map_err(err)?;
        let many = match s.text(get("Many")?).trim() {
            "$true" => true,
            "$false" => false,
            other => return Err(err(format!("Many = `{other}`"))),
        };
        let fields = projection_fields(s, get("Project")?).map_err(err)?;
        rows.push(OpRow {
            name,
            part,
            cmdlet,
            params,
            fields,
            many,
        });
    }
    Ok(rows)
}

/// `@('A', 'B')`: single-quoted names only, nothing computed.
fn params_of(s: &Script, value: Node) -> Result<Vec<String>, String> {
    let text = s.text(value).trim();
    if !(text.starts_with("@(") && text.ends_with(')')) {
        return Err(format!("Params = `{text}` is not @(...)"));
    }
    let all = descendants(value);
    if let Some(bad) = all.iter().find(|n| {
        matches!(
            n.kind(),
            "variable" | "sub_expression" | "expandable_string_literal" | "command"
        )
    }) {
        return Err(format!("Params computes `{}`", s.text(*bad)));
    }
    all.into_iter()
        .filter(|n| n.kind() == "string_literal")
        .map(|n| verbatim(s, n))
        .collect()
}

/// `$null`, or `{ param($o) [ordered]@{ Field = ... } }`: the field names in
/// order, each read from the output property of the same name.
fn projection_fields(s: &Script, value: Node) -> Result<Vec<String>, String> {
    let text = s.text(value).trim();
    if text == "$null" {
        return Ok(Vec::new());
    }
    let block = first_of_kind(value, "script_block_expression")
        .ok_or_else(|| format!("Project = `{}`", excerpt(text)))?;
    if s.text(block) != text {
        return Err(format!(
            "Project is more than a script block: `{}`",
            excerpt(text)
        ));
    }
    let cast = descendants(block)
        .into_iter()
        .find(|n| {
            n.kind() == "cast_expression"
                && child_of_kind(*n, "type_literal")
                    .is_some_and(|t| s.text(t).eq_ignore_ascii_case("[ordered]"))
        })
        .ok_or("Project has no [ordered]@{...}")?;
    let hash =
        first_of_kind(cast, "hash_literal_expression").ok_or("Project: [ordered] of no hash")?;
    let mut fields = Vec::new();
    for (key, v) in hash_entries(s, hash) {
        let read = norm(s.text(v));
        let reads_itself = [
            format!("Get-Text $o '{key}'"),
            format!("Get-Flag $o '{key}'"),
            format!("[string[]]@(Get-TextList $o '{key}')"),
        ]
        .contains(&read)
            || (key == "AssignedPlan" && read == "[string[]]@(Get-EnabledCapability $o)");
        if !reads_itself {
            return Err(format!(
                "field {key} = `{read}` does not read property {key}"
            ));
        }
        fields.push(key);
    }
    Ok(fields)
}

/// Differences between the script's table and HOST_OPS, one per line.
fn drift(script: &[OpRow], rust: &[OpRow]) -> Vec<String> {
    let mut out = Vec::new();
    for r in rust {
        let Some(h) = script.iter().find(|h| h.name == r.name) else {
            out.push(format!("{}: in ops.rs, missing from host.ps1", r.name));
            continue;
        };
        let mut field = |what: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{}.{what}: host.ps1 {a} / ops.rs {b}", r.name));
            }
        };
        field("part", h.part.clone(), r.part.clone());
        field("cmdlet", h.cmdlet.clone(), r.cmdlet.clone());
        field(
            "params",
            format!("{:?}", h.params),
            format!("{:?}", r.params),
        );
        field(
            "fields",
            format!("{:?}", h.fields),
            format!("{:?}", r.fields),
        );
        field("many", h.many.to_string(), r.many.to_string());
    }
    for h in script {
        if !rust.iter().any(|r| r.name == h.name) {
            out.push(format!("{}: in host.ps1, not in ops.rs", h.name));
        }
    }
    let order = |rows: &[OpRow]| rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    if out.is_empty() && order(script) != order(rust) {
        out.push(format!(
            "order: host.ps1 {:?} / ops.rs {:?}",
            order(script),
            order(rust)
        ));
    }
    out
}

fn rust_operations() -> Vec<OpRow> {
    HOST_OPS.iter().map(OpRow::from).collect()
}

// ---- the splat ----

/// Assignments that may touch `$splat`.
const SPLAT_ASSIGNMENTS: &[&str] = &[
    "$splat = @{}",
    "$splat[$p.Name] = $p.Value",
    "$splat.AccessTokens = $OnpremTokens",
    "$splat.ErrorAction = 'Stop'",
];

/// Request values reach a cmdlet only through `@splat`, which holds only
/// `$req.args` entries whose names passed the Params check (plus the session's
/// tokens and ErrorAction); the cmdlet name comes only from the table.
fn splat_violations(s: &Script) -> Vec<String> {
    let mut out = Vec::new();
    let nodes = s.nodes();

    // The dynamic call takes `@splat` and stream redirections to $null, nothing else.
    for call in dynamic_calls(s) {
        let Some(elements) = call.child_by_field_name("command_elements") else {
            out.push(format!("{} the dynamic call has no arguments", s.at(call)));
            continue;
        };
        let mut cursor = elements.walk();
        let args: Vec<&str> = elements
            .named_children(&mut cursor)
            .filter(|e| e.kind() != "command_argument_sep")
            .map(|e| s.text(e))
            .filter(|t| !is_null_redirection(t))
            .collect();
        if args != ["@splat"] {
            out.push(format!(
                "{} the dynamic call takes {args:?}, not only @splat",
                s.at(call)
            ));
        }
    }

    // $spec is only ever the table's entry; the table is never changed.
    let assigned = |pred: &dyn Fn(&str) -> bool| -> Vec<(Node, String)> {
        nodes
            .iter()
            .filter(|n| n.kind() == "assignment_expression")
            .filter_map(|n| {
                let left = s.text(child_of_kind(*n, "left_assignment_expression")?);
                pred(left).then(|| (*n, norm(s.text(*n))))
            })
            .collect()
    };
    let spec = assigned(&|l| l.eq_ignore_ascii_case("$spec"));
    if spec.len() != 1 || spec[0].1 != "$spec = $Operations[$name]" {
        out.push(format!(
            "$spec must be assigned once, from $Operations[$name]: {:?}",
            spec.iter().map(|(_, t)| t).collect::<Vec<_>>()
        ));
    }
    for (n, t) in assigned(&|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("$operations[")
            || l.starts_with("$operations.")
            || l.starts_with("$spec.")
            || l.starts_with("$spec[")
    }) {
        out.push(format!(
            "{} the table is changed at run time: `{t}`",
            s.at(n)
        ));
    }

    // Every use of $splat is one of the allowed assignments or the call.
    for v in nodes.iter().filter(|n| n.kind() == "variable") {
        let name = s.text(*v).to_ascii_lowercase();
        if name == "@splat" {
            let in_call = ancestors(*v).iter().any(|a| dynamic_calls(s).contains(a));
            if !in_call {
                out.push(format!("{} @splat outside the dynamic call", s.at(*v)));
            }
            continue;
        }
        if name != "$splat" {
            continue;
        }
        let ups = ancestors(*v);
        let Some(assign) = ups.iter().find(|a| a.kind() == "assignment_expression") else {
            out.push(format!("{} $splat used outside an assignment", s.at(*v)));
            continue;
        };
        let on_left = ups
            .iter()
            .any(|a| a.kind() == "left_assignment_expression" && a.parent() == Some(*assign));
        let text = norm(s.text(*assign));
        if !on_left || !SPLAT_ASSIGNMENTS.contains(&text.as_str()) {
            out.push(format!("{} $splat in `{text}`", s.at(*v)));
        }
    }
    for want in ["$splat = @{}", "$splat[$p.Name] = $p.Value"] {
        let n = assigned(&|l| l.to_ascii_lowercase().starts_with("$splat"))
            .iter()
            .filter(|(_, t)| t == want)
            .count();
        if n != 1 {
            out.push(format!("`{want}` appears {n} times, not once"));
        }
    }

    // The copy loop walks $req.args and refuses a name Params lacks first.
    for (n, _) in assigned(&|l| l == "$splat[$p.Name]") {
        let ups = ancestors(n);
        let Some(each) = ups.iter().find(|a| a.kind() == "foreach_statement") else {
            out.push(format!("{} the splat is filled outside a foreach", s.at(n)));
            continue;
        };
        let var = child_of_kind(*each, "variable").map(|v| s.text(v));
        let over = child_of_kind(*each, "pipeline").map(|p| norm(s.text(p)));
        if var != Some("$p") || over.as_deref() != Some("$req.args.PSObject.Properties") {
            out.push(format!(
                "{} the splat is filled from {over:?}, not $req.args.PSObject.Properties",
                s.at(n)
            ));
        }
        let guarded = descendants(*each).into_iter().any(|g| {
            g.kind() == "if_statement"
                && g.end_byte() <= n.start_byte()
                && g.child_by_field_name("condition")
                    .map(|c| norm(s.text(c)))
                    .as_deref()
                    == Some("$spec.Params -notcontains $p.Name")
                && descendants(g).iter().any(|r| {
                    r.kind() == "flow_control_statement" && s.text(*r).starts_with("return")
                })
        });
        if !guarded {
            out.push(format!(
                "{} no `if ($spec.Params -notcontains $p.Name) {{ return ... }}` before the copy",
                s.at(n)
            ));
        }
    }

    // A request value is used once: copied into the splat.
    let value_uses = nodes
        .iter()
        .filter(|n| n.kind() == "member_access" && norm(s.text(**n)) == "$p.Value")
        .count();
    if value_uses != 1 {
        out.push(format!(
            "$p.Value is used {value_uses} times, not once (the splat copy)"
        ));
    }
    out
}

/// `3>$null` and the like: the grammar reads them as plain tokens.
fn is_null_redirection(t: &str) -> bool {
    let b = t.as_bytes();
    t.len() == 7 && (b'1'..=b'6').contains(&b[0]) && t[1..].eq_ignore_ascii_case(">$null")
}

// ---- the tests ----

fn host() -> Script<'static> {
    Script::parse(HOST_SCRIPT)
}

#[test]
fn the_script_parses_without_errors() {
    let s = host();
    let errors = syntax_errors(&s);
    assert!(
        errors.is_empty(),
        "host.ps1 does not parse cleanly:\n{}",
        errors.join("\n")
    );
    assert!(!s.tree.root_node().has_error());
    // Not an empty placeholder: the main loop and the table are there.
    assert!(HOST_SCRIPT.contains("[Console]::In.ReadLine()"));
    assert!(HOST_SCRIPT.lines().count() > 200);
}

#[test]
fn the_script_is_ascii_without_bom() {
    // Windows PowerShell reads a BOM-less script in the ANSI code page.
    let bad: Vec<String> = HOST_SCRIPT
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_ascii())
        .map(|(i, l)| format!("{}: {l}", i + 1))
        .collect();
    assert!(bad.is_empty(), "non-ASCII lines:\n{}", bad.join("\n"));
    assert!(!HOST_SCRIPT.starts_with('\u{feff}'));
}

#[test]
fn commands_are_allowlisted_and_the_cmdlet_call_is_the_only_dynamic_one() {
    let s = host();
    let mut v = command_violations(&s, &allowed_names());
    v.extend(utility_target_violations(&s));
    v.extend(forbidden_constructs(&s));
    assert!(v.is_empty(), "host.ps1:\n{}", v.join("\n"));
    let calls = dynamic_calls(&s);
    assert_eq!(
        calls.len(),
        1,
        "exactly one `& {DYNAMIC_CALL}`, found at {:?}",
        calls.iter().map(|c| s.at(*c)).collect::<Vec<_>>()
    );
}

#[test]
fn the_allowlist_is_minimal_and_the_functions_are_the_scripts_own() {
    let s = host();
    let nodes = s.nodes();
    let used: BTreeSet<String> = nodes
        .iter()
        .filter(|n| n.kind() == "command")
        .filter_map(|n| n.child_by_field_name("command_name"))
        .filter(|n| n.kind() == "command_name")
        .map(|n| s.text(n).to_ascii_lowercase())
        .collect();
    let unused: Vec<&&str> = ALLOWED_CMDLETS
        .iter()
        .filter(|c| !used.contains(&c.to_ascii_lowercase()))
        .collect();
    assert!(
        unused.is_empty(),
        "allowlisted but unused, drop them: {unused:?}"
    );

    let defined: BTreeSet<String> = nodes
        .iter()
        .filter(|n| n.kind() == "function_statement")
        .filter_map(|n| child_of_kind(*n, "function_name"))
        .map(|n| s.text(n).to_string())
        .collect();
    let listed: BTreeSet<String> = SCRIPT_FUNCTIONS.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        defined, listed,
        "functions host.ps1 defines vs SCRIPT_FUNCTIONS"
    );
    for f in SCRIPT_FUNCTIONS {
        assert!(
            !eq_any(f, ALLOWED_CMDLETS)
                && !eq_any(f, FORBIDDEN_COMMANDS)
                && !HOST_OPS.iter().any(|o| o.cmdlet.eq_ignore_ascii_case(f)),
            "function {f} shadows a cmdlet"
        );
    }
}

#[test]
fn the_operation_table_equals_host_ops() {
    let s = host();
    let script = script_operations(&s).unwrap_or_else(|e| panic!("cannot read $Operations: {e}"));
    let d = drift(&script, &rust_operations());
    assert!(
        d.is_empty(),
        "host.ps1 $Operations and ops.rs HOST_OPS differ:\n{}",
        d.join("\n")
    );
    assert_eq!(script, rust_operations());
}

#[test]
fn request_values_reach_the_cmdlet_only_through_the_splat() {
    let v = splat_violations(&host());
    assert!(v.is_empty(), "host.ps1:\n{}", v.join("\n"));
}

#[test]
fn the_checkers_catch_hostile_code() {
    let hostile = [
        "Invoke-Expression $x",
        "iex $x",
        "Invoke-Command -ScriptBlock { 1 }",
        "Add-Type -TypeDefinition $src",
        "Start-Process cmd.exe",
        "New-PSSession -ComputerName x",
        "[scriptblock]::Create($s)",
        "$sb = [scriptblock]$s",
        "[System.Management.Automation.ScriptBlock]::Create($s)",
        "[powershell]::Create().AddScript($s).Invoke()",
        "$ps.AddScript($s)",
        "$ExecutionContext.InvokeCommand.InvokeScript($s)",
        "$global:ExecutionContext.SessionState",
        "& $name @splat",
        "& \"Get-$noun\" @splat",
        "& ('Get-' + 'CsUser')",
        ". $path",
        ". .\\evil.ps1",
        "& Get-ChildItem",
        "Get-$noun",
        "Remove-Item -Recurse C:\\",
        "Get-CsOnlineUser -Identity $x",
        "$block.Invoke()",
        "New-Object System.Management.Automation.PowerShell",
        "New-Object -TypeName System.Net.WebClient",
        "Import-Module .\\evil.psm1",
        "Import-Module -Name $path",
        "Get-Command -Name $name",
        "function f { ",
    ];
    for snippet in hostile {
        let s = Script::parse(snippet);
        assert!(
            !all_violations(&s).is_empty(),
            "the checks let through: {snippet}"
        );
    }

    // The same checks on the real script with one hostile line added.
    let marker = "    $out = & $spec.Cmdlet @splat";
    assert!(HOST_SCRIPT.contains(marker));
    for line in [
        "    Invoke-Expression $line",
        "    $x = [scriptblock]::Create($line)",
        "    & $name @splat",
    ] {
        let mutated = HOST_SCRIPT.replacen(marker, &format!("{line}\n{marker}"), 1);
        let s = Script::parse(&mutated);
        assert!(
            !all_violations(&s).is_empty(),
            "the checks let through host.ps1 + {line}"
        );
    }
    // A second cmdlet call breaks "exactly one".
    let twice = HOST_SCRIPT.replacen(marker, &format!("{marker}\n{marker}"), 1);
    assert_eq!(dynamic_calls(&Script::parse(&twice)).len(), 2);
}

#[test]
fn the_drift_check_catches_a_changed_table() {
    let rust = rust_operations();
    let mutations = [
        ("Cmdlet = 'Get-CsUser'", "Cmdlet = 'Get-CsUsers'"),
        (
            "Params = @('Identity', 'PolicyName')",
            "Params = @('Identity', 'PolicyName', 'Global')",
        ),
        (
            "PortInOrderStatus = Get-Text $o 'PortInOrderStatus'",
            "PortInOrder = Get-Text $o 'PortInOrder'",
        ),
        ("Many = $true", "Many = $false"),
        ("Part = 'onprem'", "Part = 'teams'"),
        ("    send_dialin_email = @{", "    send_dialin_mail = @{"),
    ];
    for (from, to) in mutations {
        assert!(HOST_SCRIPT.contains(from), "{from}");
        let mutated = HOST_SCRIPT.replacen(from, to, 1);
        let s = Script::parse(&mutated);
        let script = script_operations(&s).unwrap_or_else(|e| panic!("{to}: {e}"));
        assert!(
            !drift(&script, &rust).is_empty(),
            "drift not seen: {from} -> {to}"
        );
    }
    // Tables the reader refuses outright.
    for (from, to) in [
        ("Cmdlet = 'Get-CsUser'", "Cmdlet = \"Get-$noun\""),
        (
            "Params = @('Identity', 'PolicyName')",
            "Params = @('Identity', $extra)",
        ),
        (
            "LocationId = Get-Text $o 'LocationId'",
            "LocationId = Get-Text $o 'CivicAddressId'",
        ),
    ] {
        let mutated = HOST_SCRIPT.replacen(from, to, 1);
        assert!(
            script_operations(&Script::parse(&mutated)).is_err(),
            "accepted: {to}"
        );
    }
}

#[test]
fn the_splat_check_catches_other_routes() {
    let mutations = [
        (
            "$out = & $spec.Cmdlet @splat",
            "$out = & $spec.Cmdlet @splat -Identity $p.Value",
        ),
        (
            "$out = & $spec.Cmdlet @splat",
            "$out = & $spec.Cmdlet @splat @extra",
        ),
        (
            "$splat.ErrorAction = 'Stop'",
            "$splat.ErrorAction = 'Stop'\n    $splat[$k] = $v",
        ),
        (
            "$splat.ErrorAction = 'Stop'",
            "$splat.ErrorAction = 'Stop'\n    $splat.Add('Filter', $line)",
        ),
        (
            "foreach ($p in $req.args.PSObject.Properties)",
            "foreach ($p in $req.PSObject.Properties)",
        ),
        ("if ($spec.Params -notcontains $p.Name)", "if ($false)"),
        (
            "$spec = $Operations[$name]",
            "$spec = $Operations[$name]\n    $spec.Cmdlet = $name",
        ),
        ("$spec = $Operations[$name]", "$spec = @{ Cmdlet = $name }"),
    ];
    for (from, to) in mutations {
        assert!(HOST_SCRIPT.contains(from), "{from}");
        let mutated = HOST_SCRIPT.replacen(from, to, 1);
        let v = splat_violations(&Script::parse(&mutated));
        assert!(!v.is_empty(), "the splat check let through: {to}");
    }
}

/// The text of a `$name = '...'` assignment inside the script.
fn script_string(name: &str) -> String {
    let s = host();
    let prefix = format!("{name} = ");
    let assign = s
        .nodes()
        .into_iter()
        .find(|n| n.kind() == "assignment_expression" && s.text(*n).starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {name} in host.ps1"));
    let value = assign.child_by_field_name("value").expect("a value");
    verbatim(&s, value).expect("a single-quoted pattern")
}

#[test]
fn the_correlation_id_pattern_finds_the_ids_modules_print() {
    // .NET and Rust regex agree on this subset (no lookaround, no backrefs).
    let re = regex::Regex::new(&script_string("$pattern")).expect("the pattern compiles");
    let find = |m: &str| re.captures(m).map(|c| c[1].to_string());
    let cases = [
        ("Trace ID: 5dc9b749-95d6-47d9-b3fe-2419a4161600\nCorrelation ID: a720051b-196a-43b2-9ae2-bc44544bbd53", Some("a720051b-196a-43b2-9ae2-bc44544bbd53")),
        ("InnerError:\n  RequestId: 0a078885-3643-4aa8-8ec0-e0832d20e7ff\n  DateTimeStamp: 2019-05-06T11:23:14", Some("0a078885-3643-4aa8-8ec0-e0832d20e7ff")),
        ("failed (client-request-id=0F6E3C7A-1B2C-4D5E-8F90-A1B2C3D4E5F6)", Some("0F6E3C7A-1B2C-4D5E-8F90-A1B2C3D4E5F6")),
        ("CorrelationId: 3fa85f64-5717-4562-b3fc-2c963f66afa6", Some("3fa85f64-5717-4562-b3fc-2c963f66afa6")),
        ("Telephone Number '+14255550100' is not found from tenant '9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a'", None),
        ("Invalid credential", None),
    ];
    for (message, want) in cases {
        assert_eq!(find(message).as_deref(), want, "{message}");
    }
}

#[test]
fn the_jwt_scrub_pattern_hides_tokens() {
    let s = host();
    let call = s
        .nodes()
        .into_iter()
        .find(|n| {
            n.kind() == "invokation_expression" && s.text(*n).starts_with("[regex]::Replace($Text")
        })
        .expect("Hide-Secret's [regex]::Replace");
    let lit = first_of_kind(call, "string_literal").expect("a pattern");
    let pattern = verbatim(&s, lit).expect("single-quoted");
    let re = regex::Regex::new(&pattern).expect("compiles");
    let token =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoIn0.c2lnbmF0dXJl-_x";
    let message = format!("Cannot convert the \"{token}\" value");
    let hidden = re.replace_all(&message, "[redacted]");
    assert!(!hidden.contains("eyJ"), "{hidden}");
    assert_eq!(hidden, "Cannot convert the \"[redacted]\" value");
}

// ---- golden replies ----

fn fixtures() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/powershell");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/fixtures/powershell") {
        let path = entry.expect("an entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .expect("a name")
            .to_string();
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(text.is_ascii(), "{name}: the host writes ASCII only");
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name, value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Fields of one projected object are exactly the op's, as strings, booleans,
/// string lists or null.
fn check_object(name: &str, op: &HostOp, v: &Value) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{name}: {v} is not an object"));
    let got: BTreeSet<&str> = obj.keys().map(|k| k.as_str()).collect();
    let want: BTreeSet<&str> = op.fields.iter().copied().collect();
    assert_eq!(got, want, "{name}: fields of {}", op.name);
    for (k, field) in obj {
        let plain = match field {
            Value::Null | Value::Bool(_) | Value::String(_) => true,
            Value::Array(items) => items.iter().all(Value::is_string),
            _ => false,
        };
        assert!(
            plain,
            "{name}: {k} = {field} is not a string, boolean or string list"
        );
    }
}

#[test]
fn golden_replies_are_framed_replies_with_the_ops_fields() {
    let all = fixtures();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "get_number_assignment.example1",
        "get_number_assignment.example2",
        "get_online_user.ok",
        "set_number_assignment.not_found",
        "set_number_assignment.unauthorized",
    ] {
        assert!(
            names.contains(&want),
            "missing fixture {want}.json (have {names:?})"
        );
    }
    for (name, value) in &all {
        let line = format!("{FRAME}{}", ascii_json(value));
        let Line::Reply(reply) = parse_line(&line) else {
            panic!("{name}: not a reply line: {:?}", parse_line(&line));
        };
        let op_name = name.split('.').next().unwrap_or_default();
        let op = host_op(op_name).unwrap_or_else(|| panic!("{name}: no host operation {op_name}"));
        if reply.ok {
            assert!(reply.error.is_none(), "{name}");
            if op.fields.is_empty() {
                assert_eq!(reply.result, serde_json::json!({}), "{name}");
            } else if op.many {
                let rows = reply
                    .result
                    .as_array()
                    .unwrap_or_else(|| panic!("{name}: {} is many", op.name));
                assert!(
                    !rows.is_empty(),
                    "{name}: an example with no rows shows nothing"
                );
                for row in rows {
                    check_object(name, op, row);
                }
            } else {
                check_object(name, op, &reply.result);
            }
        } else {
            let e = reply
                .error
                .unwrap_or_else(|| panic!("{name}: a failure without an error"));
            assert!(e.fqid.contains(','), "{name}: fqid {}", e.fqid);
            assert!(
                !e.category.is_empty() && !e.exception_type.is_empty() && !e.message.is_empty(),
                "{name}: {e:?}"
            );
            assert!(reply.result.is_null(), "{name}");
        }
    }
    let error = |n: &str| {
        let (_, v) = all
            .iter()
            .find(|(name, _)| name == n)
            .expect("listed above");
        v["error"]["fqid"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(
        error("set_number_assignment.not_found"),
        "NotFound,Microsoft.Teams.ConfigAPI.Cmdlets.Generated.Cmdlets.SetCsPhoneNumberAssignment_Set"
    );
    assert!(error("set_number_assignment.unauthorized").starts_with("Unauthorized,"));
}

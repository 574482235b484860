//! The workflows shipped inside the binary (`workflows/*.yaml`), found by name
//! when no workflow directory holds one.

const WORKFLOWS: &[(&str, &str)] = &[(
    "direct-routing-to-operator-connect",
    include_str!("../../workflows/direct-routing-to-operator-connect.yaml"),
)];

/// The text of the built-in workflow `name`.
pub fn workflow_text(name: &str) -> Option<&'static str> {
    WORKFLOWS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Names of the built-in workflows.
pub fn names() -> Vec<&'static str> {
    WORKFLOWS.iter().map(|(n, _)| *n).collect()
}

/// The origin shown in diagnostics for a built-in workflow.
pub fn origin(name: &str) -> String {
    format!("builtin:{name}.yaml")
}

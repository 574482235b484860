//! The workflows shipped inside the binary (`workflows/*.yaml`), found by name
//! when no workflow directory holds one.

macro_rules! shipped {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../workflows/", $name, ".yaml")))),*]
    };
}

const WORKFLOWS: &[(&str, &str)] = shipped![
    "direct-routing-to-operator-connect",
    "calling-plans-to-operator-connect",
    "onprem-to-online",
    "assign-emergency-location",
    "send-conferencing-info",
    "reset-conference-id",
];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_workflow_is_built_in_and_valid() {
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/workflows"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(
            names().len(),
            on_disk,
            "every file in workflows/ is compiled in"
        );
        for n in names() {
            let text = workflow_text(n).unwrap_or_default();
            let loaded = crate::spec::parse_workflow(text, &origin(n));
            assert!(
                loaded.is_ok(),
                "{n}: {:?}",
                loaded.err().map(|e| e.to_string())
            );
        }
    }
}

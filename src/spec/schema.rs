//! JSON Schemas (draft 2020-12) of the files the loader reads, generated from
//! the loader's own types (`portflow schema workflow|run|schedule`), for
//! editors (`# yaml-language-server: $schema=…`) and checks in CI.
//!
//! The types carry `#[derive(JsonSchema)]` beside `Deserialize`, so serde's
//! renames, defaults, tags and `deny_unknown_fields` show up as they are. What
//! a custom deserializer accepts is written here: durations, conditions,
//! templates, `stop_after_failures`, operation names. One rule of the YAML
//! loader is applied to the whole schema by [`YamlScalars`]: a plain string
//! field also takes an unquoted number or boolean (`label: 2024` is the text
//! `2024`), as serde_yaml reads it.

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::transform::{transform_subschemas, Transform};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

use super::expr::Expr;
use super::model::Workflow;
use super::runfile::{FailureLimit, RunFile};
use super::schedules::ScheduleFileForms;
use super::template::Template;
use crate::backend::OperationKind;

/// Which file a schema describes (`portflow schema workflow|run|schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    /// A workflow (`workflows/*.yaml`).
    Workflow,
    /// A run file (`examples/*.yaml`).
    Run,
    /// A schedule file (one schedule, or `schedules:` with a list).
    Schedule,
}

impl SchemaKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [SchemaKind; 3] = [SchemaKind::Workflow, SchemaKind::Run, SchemaKind::Schedule];

    /// Its name on the command line (`portflow schema <name>`).
    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::Workflow => "workflow",
            SchemaKind::Run => "run",
            SchemaKind::Schedule => "schedule",
        }
    }

    /// The file it is shipped as, under `docs/schema/`.
    pub fn file_name(self) -> String {
        format!("{}.schema.json", self.name())
    }

    fn title(self) -> &'static str {
        match self {
            SchemaKind::Workflow => "portflow workflow",
            SchemaKind::Run => "portflow run file",
            SchemaKind::Schedule => "portflow schedule file",
        }
    }
}

/// The schema of `kind`, as a JSON value.
pub fn schema(kind: SchemaKind) -> Value {
    let generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .with_transform(YamlScalars)
        .into_generator();
    let mut root = match kind {
        SchemaKind::Workflow => generator.into_root_schema_for::<Workflow>(),
        SchemaKind::Run => generator.into_root_schema_for::<RunFile>(),
        SchemaKind::Schedule => generator.into_root_schema_for::<ScheduleFileForms>(),
    };
    root.insert("title".into(), kind.title().into());
    root.to_value()
}

/// The schema of `kind` as the text `portflow schema` prints and
/// `docs/schema/` holds: pretty JSON ending in a newline.
pub fn schema_text(kind: SchemaKind) -> String {
    let mut text = serde_json::to_string_pretty(&schema(kind)).unwrap_or_default();
    text.push('\n');
    text
}

/// A `JsonSchema` impl with a fixed schema, written out where it is used
/// (no `$defs` entry): the shape a custom deserializer accepts.
macro_rules! fixed_schema {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

/// Marks a plain string that YAML numbers and booleans must not stand for
/// (an inline subject's value: `+14255550100` unquoted is a number and is
/// refused); [`YamlScalars`] leaves schemas with a `$comment` alone.
pub struct QuotedText;

fixed_schema!(
    QuotedText,
    "QuotedText",
    json_schema!({
        "type": "string",
        "$comment": "Text only: quote numbers (\"+14255550100\"), the loader refuses YAML numbers and booleans here."
    })
);

/// A duration as users write it (`30s`, `10m`, `1h 30m`, `14d`; humantime).
/// The bare `0` is a duration too.
pub struct DurationText;

/// What [`DurationText`] matches: numbers (with a fraction: `1.5h`) each
/// followed by a unit, or `0`. Unit names are left to the loader.
pub const DURATION_PATTERN: &str = r"^\s*(0|([0-9]+(\.[0-9]+)?\s*[A-Za-zµ]+\s*)+)\s*$";

fixed_schema!(
    DurationText,
    "Duration",
    json_schema!({
        "type": ["string", "integer"],
        "pattern": DURATION_PATTERN,
        "minimum": 0,
        "maximum": 0,
        "examples": ["30s", "10m", "1h 30m", "14d"]
    })
);

fixed_schema!(
    Expr,
    "Condition",
    json_schema!({
        "type": "string",
        "description": "A condition over `inputs`, `steps` (and `obs` in a wait), \
                        e.g. `obs.number == null` (docs/workflows.md)."
    })
);

// Scalars other than strings are templates of their text; null is `${null}`.
fixed_schema!(
    Template,
    "Template",
    json_schema!({
        "type": ["string", "number", "boolean", "null"],
        "description": "Text with `${…}` expressions, e.g. `${inputs.user}`."
    })
);

fixed_schema!(
    FailureLimit,
    "FailureLimit",
    json_schema!({
        "type": ["integer", "string"],
        "minimum": 1,
        "pattern": r"^\s*([0-9]+|[0-9]*\.?[0-9]+\s*%)\s*$",
        "examples": [3, "5%"]
    })
);

fixed_schema!(OperationKind, "Operation", {
    let names: Vec<&str> = OperationKind::ALL.iter().map(|k| k.info().name).collect();
    json_schema!({
        "type": "string",
        "enum": names,
        "description": "An operation of the catalog (docs/workflows.md)."
    })
});

/// How the loader reads YAML scalars, applied to every subschema: a plain
/// string also takes a number or boolean (serde_yaml reads the scalar's
/// text). Strings with an `enum`, `const`, `pattern`, `format` or `$comment`
/// keep to strings. Also writes durations' defaults as text, drops `null`
/// defaults and rustdoc link brackets from descriptions.
#[derive(Clone)]
struct YamlScalars;

impl Transform for YamlScalars {
    fn transform(&mut self, schema: &mut Schema) {
        if let Some(obj) = schema.as_object_mut() {
            let strict = ["enum", "const", "pattern", "format", "$comment"]
                .iter()
                .any(|k| obj.contains_key(*k));
            if !strict {
                widen_string(obj.get_mut("type"));
            }
            match obj.get_mut("default") {
                // Says nothing a missing key does not; clutters editors' hovers.
                Some(Value::Null) => {
                    obj.remove("default");
                }
                Some(d) => duration_default(d),
                None => {}
            }
            if let Some(Value::String(text)) = obj.get_mut("description") {
                *text = text.replace("[`", "`").replace("`]", "`");
            }
        }
        transform_subschemas(self, schema);
    }
}

/// `"string"` (or `["string", "null"]`) → also `"number"`, `"boolean"`.
fn widen_string(ty: Option<&mut Value>) {
    let Some(ty) = ty else { return };
    let mut types: Vec<Value> = match ty {
        Value::String(s) if s == "string" => vec![ty.clone()],
        Value::Array(a) if a.iter().all(|t| t == "string" || t == "null") => a.clone(),
        _ => return,
    };
    if !types.iter().any(|t| t == "string") {
        return;
    }
    let at = types
        .iter()
        .position(|t| t == "string")
        .map_or(0, |i| i + 1);
    types.splice(at..at, ["number".into(), "boolean".into()]);
    *ty = Value::Array(types);
}

/// A `Duration` default serializes as `{secs, nanos}`: write it as users do.
fn duration_default(d: &mut Value) {
    let Value::Object(m) = d else { return };
    let (Some(secs), Some(nanos), 2) = (
        m.get("secs").and_then(Value::as_u64),
        m.get("nanos").and_then(Value::as_u64),
        m.len(),
    ) else {
        return;
    };
    let dur = std::time::Duration::new(secs, u32::try_from(nanos).unwrap_or(0));
    *d = Value::String(humantime::format_duration(dur).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duration_pattern_agrees_with_the_loader() {
        let re = regex::Regex::new(DURATION_PATTERN).expect("pattern compiles");
        for ok in [
            "30s", "10m", "1h 30m", "1h30m", "14d", "0", " 2 days ", "100ms", "1.5h",
        ] {
            assert!(re.is_match(ok), "{ok} should match");
            assert!(
                crate::clock::parse_duration(ok).is_ok(),
                "{ok} should parse"
            );
        }
        for bad in ["10", "", "m", "1.s", ".5h", "-1s"] {
            assert!(!re.is_match(bad), "{bad} should not match");
            assert!(
                crate::clock::parse_duration(bad).is_err(),
                "{bad} is refused"
            );
        }
    }

    #[test]
    fn string_fields_take_yaml_scalars_and_defaults_read_as_durations() {
        let run = schema(SchemaKind::Run);
        let props = &run["properties"];
        assert_eq!(
            props["label"]["type"],
            serde_json::json!(["string", "number", "boolean", "null"])
        );
        assert_eq!(
            props["workflow"]["type"],
            serde_json::json!(["string", "number", "boolean"])
        );
        assert_eq!(props["call_timeout"]["default"], "2m");
        assert_eq!(run["additionalProperties"], false);
        assert_eq!(run["title"], "portflow run file");
        assert!(run.get("$id").is_none());
        let wf = schema(SchemaKind::Workflow);
        assert_eq!(
            wf["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let step = &wf["$defs"]["Step"]["properties"];
        assert!(
            step["description"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("for people")),
            "descriptions come from the rustdoc: {step}"
        );
    }
}

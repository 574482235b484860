//! Workflow and run-file specifications: model, parsing, validation, templating, conditions.
//!
//! Pipeline: [`locate`] (a position map of the YAML) → serde into [`model`] /
//! [`runfile`] → [`validate`] (cross-field rules) → [`subjects`] (inline or CSV),
//! with every problem reported as a [`Diagnostic`] `file:line:col: message`.
//! Every file is read by [`source`] and every size bounded by [`limits`].

pub mod builtin;
pub mod diag;
pub mod expr;
pub mod limits;
pub mod load;
pub mod locate;
pub mod model;
pub mod runfile;
pub mod schedules;
pub mod schema;
pub mod serve;
pub mod source;
pub mod subject_list;
pub mod subjects;
pub mod template;
pub mod validate;

#[cfg(test)]
mod input_tests;
#[cfg(test)]
mod tests;

pub use diag::{Diagnostic, SpecError};
pub use load::{
    compose, is_run_file_text, load_run, load_run_text, load_workflow, parse_workflow,
    resolve_workflow, validate_file, LoadedRun, LoadedWorkflow, SpecKind,
};
pub use schedules::load_schedules;
pub use serve::{load_serve_file, ServeFile};
pub use validate::{is_e164, is_upn};

//! Workflow and run-file specifications: model, parsing, validation, templating, conditions.

pub mod expr;
pub mod model;
pub mod runfile;
pub mod template;

//! A preflight (`plan`) as a report: per subject ready or blocked and why,
//! the blockers grouped by normalised cause; CSV and HTML with the run
//! report's pieces (`plan --json` keeps its own document).

use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::escape::csv_text;
use super::html::{self, Cell};
use super::normalise::{Group, Grouper};
use super::zone::Zone;
use crate::clock::Timestamp;

/// One subject's preflight.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRow {
    /// The subject.
    pub subject: String,
    /// Its inputs from the run file.
    pub inputs: Map<String, Value>,
    /// What blocks it (none: ready).
    pub blockers: Vec<String>,
    /// The steps it will go through.
    pub path: Vec<String>,
}

/// A run file's preflight.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanReport {
    /// The run file.
    pub run_file: String,
    /// Workflow name, version and hash.
    pub workflow: (String, u32, String),
    /// What it was planned against.
    pub tenant: String,
    /// When.
    pub planned_at: Timestamp,
    /// Input names, in order.
    pub inputs: Vec<String>,
    /// One row per subject, in run-file order.
    pub subjects: Vec<PlanRow>,
}

impl PlanReport {
    /// Subjects blocked.
    pub fn blocked(&self) -> usize {
        self.subjects
            .iter()
            .filter(|p| !p.blockers.is_empty())
            .count()
    }

    /// Blockers by normalised cause, largest first.
    pub fn groups(&self) -> Vec<Group> {
        let mut g = Grouper::new();
        for p in &self.subjects {
            for b in &p.blockers {
                g.add(&p.subject, b, &p.inputs);
            }
        }
        g.finish()
    }

    /// One row per subject with a header, formula-safe.
    pub fn to_csv(&self) -> Result<String, csv::Error> {
        let mut header = vec!["subject".to_string()];
        for name in &self.inputs {
            header.push(match name.as_str() {
                "subject" | "status" | "blockers" | "path" => format!("input.{name}"),
                _ => name.clone(),
            });
        }
        header.extend(["status", "blockers", "path"].map(String::from));
        let mut records = vec![header];
        for p in &self.subjects {
            let mut row = vec![p.subject.clone()];
            for name in &self.inputs {
                row.push(
                    p.inputs
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            row.push(status(p).into());
            row.push(p.blockers.join("; "));
            row.push(p.path.join(" → "));
            records.push(row);
        }
        csv_text(&records)
    }

    /// One self-contained page; every value escaped.
    pub fn to_html(&self, zone: Tz) -> String {
        let blocked = self.blocked();
        let mut body = String::new();
        body.push_str(&html::section(
            "states",
            "Subjects",
            &html::counts(
                "state",
                &[
                    (
                        "ready".into(),
                        "ready".into(),
                        self.subjects.len() - blocked,
                        "ok",
                    ),
                    ("blocked".into(), "blocked".into(), blocked, "bad"),
                ],
            ),
        ));
        let groups = self.groups();
        let inner = html::groups_table(&groups, "blocker", "Nothing blocks any subject.");
        body.push_str(&html::section("groups", "Blocked, by cause", &inner));
        let mut headers = vec!["subject"];
        headers.extend(self.inputs.iter().map(String::as_str));
        headers.extend(["status", "blockers", "path"]);
        let rows: Vec<html::Row> = self
            .subjects
            .iter()
            .map(|p| {
                let mut cells = vec![Cell::Text(p.subject.clone())];
                for name in &self.inputs {
                    cells.push(Cell::Text(
                        p.inputs
                            .get(name)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ));
                }
                cells.push(Cell::Text(status(p).into()));
                cells.push(Cell::Lines(p.blockers.clone()));
                cells.push(Cell::Msg(p.path.join(" → ")));
                (
                    vec![
                        ("subject", p.subject.clone()),
                        ("state", status(p).to_string()),
                    ],
                    cells,
                )
            })
            .collect();
        body.push_str(&html::section(
            "subjects",
            "Every subject",
            &html::table(&headers, &rows),
        ));
        let subtitle = format!(
            "{} v{} ({}) against {} · planned {} ({}) · nothing was changed",
            self.workflow.0,
            self.workflow.1,
            &self.workflow.2[..12.min(self.workflow.2.len())],
            self.tenant,
            Zone::Named(zone).format(self.planned_at),
            zone.name()
        );
        html::page(
            &format!("Plan for {}", self.run_file),
            &subtitle,
            None,
            &body,
        )
    }
}

fn status(p: &PlanRow) -> &'static str {
    if p.blockers.is_empty() {
        "ready"
    } else {
        "blocked"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> PlanReport {
        let row = |i: u32, blockers: Vec<String>| PlanRow {
            subject: format!("user{i:04}@contoso.com"),
            inputs:
                json!({"user": format!("user{i:04}@contoso.com"), "number": format!("+1425{i:07}")})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            blockers,
            path: vec!["inspect".into(), "assign".into()],
        };
        PlanReport {
            run_file: "run.yaml".into(),
            workflow: ("wf".into(), 1, "0123456789abcdef".into()),
            tenant: "the simulated tenant".into(),
            planned_at: Timestamp(0),
            inputs: vec!["user".into(), "number".into()],
            subjects: (0..4)
                .map(|i| {
                    row(
                        i,
                        if i == 0 {
                            vec![]
                        } else {
                            vec![format!(
                                "check-number: user{i:04}@contoso.com has the number +1425999{i:04}, not +1425{i:07}"
                            )]
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn blockers_group_by_cause_and_render_as_csv_and_html() {
        let p = sample();
        assert_eq!(p.blocked(), 3);
        let g = p.groups();
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].count, 3);
        let csv = p.to_csv().unwrap_or_default();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("subject,user,number,status,blockers,path")
        );
        assert!(
            lines
                .next()
                .unwrap_or_default()
                .starts_with("user0000@contoso.com,user0000@contoso.com,'+14250000000,ready,,"),
            "{csv}"
        );
        let page = p.to_html(Tz::UTC);
        assert!(
            page.contains("data-state=\"blocked\" data-count=\"3\""),
            "{page}"
        );
        assert!(page.contains("<tr data-count=\"3\">"), "{page}");
    }
}

//! `GET /runs/{run}/report.{csv,json,html}`: a run's report to download (the
//! status page links here), finished or live, behind the token like every
//! route. The HTML is inline style and SVG only, and its policy allows no more.

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::api::ReportQuery;
use crate::app::report::report_text;
use crate::app::runs::resolve_run_id;
use crate::daemon::state::Shared;
use crate::report::run_report::Format;

/// The report page may use its own inline style sheet, nothing else.
const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// `GET /runs/{run}/report.csv`.
pub(super) async fn csv(s: State<Shared>, r: UrlPath<String>, q: Query<ReportQuery>) -> Response {
    download(s, r, q, Format::Csv)
}

/// `GET /runs/{run}/report.json`.
pub(super) async fn json(s: State<Shared>, r: UrlPath<String>, q: Query<ReportQuery>) -> Response {
    download(s, r, q, Format::Json)
}

/// `GET /runs/{run}/report.html`.
pub(super) async fn html(s: State<Shared>, r: UrlPath<String>, q: Query<ReportQuery>) -> Response {
    download(s, r, q, Format::Html)
}

fn download(
    State(d): State<Shared>,
    UrlPath(run): UrlPath<String>,
    Query(q): Query<ReportQuery>,
    format: Format,
) -> Response {
    let made = resolve_run_id(&*d.store, &run).and_then(|id| {
        let text = report_text(&*d.store, &id, format, q.tz.as_deref())?;
        Ok((id, text))
    });
    let (id, text) = match made {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut resp = ([(header::CONTENT_TYPE, format.content_type())], text).into_response();
    if format != Format::Json {
        let name = format!("attachment; filename=\"portflow-{id}.{}\"", format.name());
        if let Ok(v) = HeaderValue::from_str(&name) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    crate::daemon::web::security_headers(&mut resp, REPORT_CSP);
    resp
}

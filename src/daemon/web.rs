//! The daemon's browser side: the status page (`GET /`), its sign-in (a cookie
//! holding the token), `GET /metrics` for Prometheus, and the views the page
//! reads: `GET /api/attention`, `/api/out-of-service`, `/api/worklist`,
//! `/api/subjects?q=` and `/api/windows`.
//!
//! The page is one static asset ([`PAGE`]) that never contains the token: its
//! script reads the JSON API with the cookie the browser sends.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

use super::auth::{authorized, token_matches, COOKIE};
use super::scan::{self, Attention, MetricView, RunScan, TTL};
use super::state::{Daemon, Shared};
use super::worklist;
use crate::api::{LimitQuery, LoginForm, PageQuery, SearchQuery};
use crate::app::outages::sort_down;
use crate::app::runs::run_clock;
use crate::app::{Error, Result};
use crate::engine::run::RunRecord;
use crate::metrics::{self, Family, MetricType};
use crate::report::escape::escape_html;
use crate::report::normalise::Grouper;
use crate::store::records;

/// The status page and its sign-in form: HTML, CSS and JS in one file.
const PAGE: &str = include_str!("status_page.html");

/// Routes added to the daemon's router.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(page))
        .route("/login", post(login))
        .route("/metrics", get(metrics_text))
        .route("/api/attention", get(attention))
        .route("/api/out-of-service", get(out_of_service))
        .route("/api/worklist", get(worklist_view))
        .route("/api/subjects", get(subjects))
        .route("/api/windows", get(windows))
}

/// What the status page may load: its own inline script and style, the API.
const PAGE_CSP: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'";

fn page_headers(resp: &mut Response) {
    security_headers(resp, PAGE_CSP);
}

/// Headers every page answer carries: nothing cached, nothing framed, no
/// referrer, and the content security policy `csp`.
pub(super) fn security_headers(resp: &mut Response, csp: &'static str) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
}

/// The page in one of its two views (`status` or `signin`), with a message for the form.
fn render(view: &str, message: &str, status: StatusCode) -> Response {
    let html = PAGE
        .replace("{{VIEW}}", view)
        .replace("{{MESSAGE}}", &escape_html(message));
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    page_headers(&mut resp);
    resp
}

fn sign_in(message: &str) -> Response {
    render("signin", message, StatusCode::UNAUTHORIZED)
}

/// 303 to `/` setting the cookie (session-only; the token changes at each start anyway).
fn signed_in(token: &str) -> Response {
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        Err(_) => return sign_in("The daemon's token cannot be sent as a cookie."),
    }
    page_headers(&mut resp);
    resp
}

async fn page(State(d): State<Shared>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    if let Some(given) = q.token {
        // Trade the token in the address for a cookie, then drop it from the address.
        if token_matches(&d.token, &given) {
            return signed_in(&d.token);
        }
        return sign_in("That is not the daemon's current token.");
    }
    if authorized(&d, &headers) {
        render("status", "", StatusCode::OK)
    } else {
        sign_in("")
    }
}

async fn login(State(d): State<Shared>, Form(f): Form<LoginForm>) -> Response {
    if token_matches(&d.token, f.token.trim()) {
        signed_in(&d.token)
    } else {
        sign_in("That is not the daemon's current token.")
    }
}

/// Families computed from the store (through the per-run cache) and the
/// committer at scrape time.
fn scraped(d: &Shared) -> Result<Vec<Family>> {
    let runs = run_figures(d)?;
    let views: Vec<MetricView<'_>> = runs
        .iter()
        .map(|(r, f)| match f {
            Figs::Live(driver) => {
                let f = lock_figures(driver);
                MetricView {
                    run: r.id.as_str(),
                    counts: f.counts().clone(),
                    down: f.down(),
                    ended: f.ended(),
                }
            }
            Figs::Scan(s) => s.metrics(r.id.as_str()),
        })
        .collect();
    let mut families = scan::families(&views);
    let stats = d.committer.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    families.extend([
        Family::new(
            "portflow_commits_total",
            "Batches handed to the group committer (transitions and other writes).",
            MetricType::Counter,
        )
        .sample(&[], load(&stats.requests) as f64),
        Family::new(
            "portflow_commit_groups_total",
            "Groups written by the committer, each one atomic write and one sync.",
            MetricType::Counter,
        )
        .sample(&[], load(&stats.groups) as f64),
    ]);
    Ok(families)
}

async fn metrics_text(State(d): State<Shared>) -> Response {
    let mut families = match scraped(&d) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    families.extend(metrics::global().families());
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode(&families),
    )
        .into_response()
}

/// Instances that need an operator: newest run first, at most `limit` (default
/// 50), from the runs' cached figures; the groups count every one of them.
fn attention_list(d: &Shared, limit: usize) -> Result<Value> {
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut grouper = Grouper::new();
    let mut runs = run_figures(d)?;
    newest_first(&mut runs, |(r, _)| r);
    let mut add = |run: &str, a: &Attention| {
        total += 1;
        grouper.add_cause(&a.subject, &a.reason, a.cause.clone());
        if out.len() < limit {
            out.push(json!({
                "run": run,
                "subject": a.subject,
                "state": a.state,
                "step": (!a.step.is_empty()).then_some(&a.step),
                "reason": a.reason,
                "cause": a.cause,
            }));
        }
    };
    for (r, figs) in &runs {
        match figs {
            Figs::Scan(scan) => scan.attention.iter().for_each(|a| add(&r.id, a)),
            Figs::Live(driver) => {
                let f = lock_figures(driver);
                for s in f.stopped() {
                    add(&r.id, &Attention::of(s, &driver.workflow));
                }
            }
        }
    }
    Ok(json!({
        "instances": out,
        "groups": grouper.finish(),
        "total": total,
        "truncated": total > out.len(),
    }))
}

async fn attention(State(d): State<Shared>, Query(q): Query<LimitQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).min(1000);
    match attention_list(&d, limit) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Who is out of service now in every run: stopped instances first, then the
/// longest down, at most `limit`; each duration at its own run's clock.
fn out_of_service_list(d: &Shared, limit: usize) -> Result<Value> {
    let mut rows = Vec::new();
    let mut per_run = serde_json::Map::new();
    for (r, scan) in run_scans(d)? {
        if scan.down.is_empty() {
            continue;
        }
        per_run.insert(r.id.clone(), json!(scan.down.len()));
        let now = run_clock(&r).now();
        let mut down = scan.down.clone();
        sort_down(&mut down);
        rows.extend(down.into_iter().map(|row| (r.id.clone(), now, row)));
    }
    // Across runs: stopped first, then the longest down at its run's clock.
    rows.sort_by_key(|(run, now, row)| {
        (
            std::cmp::Reverse(row.stuck),
            std::cmp::Reverse(row.duration(*now)),
            run.clone(),
            row.idx,
        )
    });
    let total = rows.len();
    let stuck = rows.iter().filter(|(_, _, row)| row.stuck).count();
    let out: Vec<Value> = rows
        .iter()
        .take(limit)
        .map(|(run, now, row)| {
            let mut v = row.to_json(*now);
            v["run"] = json!(run);
            v
        })
        .collect();
    Ok(json!({
        "instances": out,
        "total": total,
        "stuck": stuck,
        "runs": per_run,
        "truncated": total > out.len(),
    }))
}

async fn out_of_service(State(d): State<Shared>, Query(q): Query<LimitQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).min(1000);
    match out_of_service_list(&d, limit) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Sort runs newest first (then by id, descending).
fn newest_first<T>(runs: &mut [T], record: impl Fn(&T) -> &RunRecord) {
    runs.sort_by(|a, b| {
        let (a, b) = (record(a), record(b));
        b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id))
    });
}

/// Who waits for a person, grouped by run (newest first) and step; each
/// group lists at most `limit` subjects.
fn worklist_list(d: &Shared, limit: usize) -> Result<Value> {
    let mut runs = run_scans(d)?;
    newest_first(&mut runs, |(r, _)| r);
    let mut groups = Vec::new();
    let mut total = 0usize;
    for (r, scan) in &runs {
        total += scan.work.len();
        groups.extend(
            worklist::groups(&r.id, &scan.steps, &scan.work, limit)
                .into_iter()
                .map(|mut g| {
                    g["label"] = json!(r.label);
                    g
                }),
        );
    }
    Ok(json!({"groups": groups, "total": total}))
}

async fn worklist_view(State(d): State<Shared>, Query(q): Query<LimitQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).min(1000);
    match worklist_list(&d, limit) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Subjects containing `q` (case-insensitive) in every run: exact matches
/// first, then prefixes, then the rest; newest run first within each.
fn search_subjects(d: &Shared, q: &str, limit: usize) -> Result<Value> {
    let needle = q.trim().to_lowercase();
    if needle.is_empty() {
        return Err(Error::input("give `q`: a subject or part of one"));
    }
    let mut runs = run_scans(d)?;
    newest_first(&mut runs, |(r, _)| r);
    let mut hits = Vec::new();
    for (order, (r, scan)) in runs.iter().enumerate() {
        for (subject, state) in &scan.subjects {
            let lower = subject.to_lowercase();
            let rank = if lower == needle {
                0
            } else if lower.starts_with(&needle) {
                1
            } else if lower.contains(&needle) {
                2
            } else {
                continue;
            };
            hits.push((rank, order, r.id.as_str(), subject.as_str(), *state));
        }
    }
    // Stable: index order within a run stays.
    hits.sort_by_key(|(rank, order, ..)| (*rank, *order));
    let total = hits.len();
    let matches: Vec<Value> = hits
        .iter()
        .take(limit)
        .map(|(_, _, run, subject, state)| json!({"run": run, "subject": subject, "state": state}))
        .collect();
    Ok(json!({"q": q, "matches": matches, "total": total, "truncated": total > matches.len()}))
}

async fn subjects(State(d): State<Shared>, Query(q): Query<SearchQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).min(1000);
    match search_subjects(&d, &q.q, limit) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The porting window of every unfinished run that has one: open now or not,
/// when it opens and closes next, at the run's own clock.
fn windows_list(d: &Shared) -> Result<Value> {
    let mut runs = run_scans(d)?;
    newest_first(&mut runs, |(r, _)| r);
    let out: Vec<Value> = runs
        .iter()
        .filter_map(|(r, scan)| {
            let w = scan.window.as_ref()?;
            let now = run_clock(r).now();
            let at = |t: Option<crate::clock::Timestamp>| t.map(|t| t.rfc3339());
            Some(json!({
                "run": r.id,
                "label": r.label,
                "cron": w.spec.cron,
                "duration": w.spec.duration,
                "timezone": w.spec.timezone,
                "open": w.window.contains(now),
                "opens": at(w.window.next_open(now)),
                "closes": at(w.window.closes_at(now)),
                "now": now.rfc3339(),
                "scaled": r.clock.is_some(),
            }))
        })
        .collect();
    Ok(json!({"windows": out}))
}

async fn windows(State(d): State<Shared>) -> Response {
    match windows_list(&d) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A run's figures: kept by its driver while one drives it (once their seed
/// is in), else read from the store and cached.
enum Figs {
    Live(std::sync::Arc<crate::engine::executor::Driver>),
    Scan(std::sync::Arc<RunScan>),
}

fn lock_figures(
    d: &crate::engine::executor::Driver,
) -> std::sync::MutexGuard<'_, crate::engine::figures::Figures> {
    d.progress.figures.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every stored run with its figures: a driven run's from its driver, in
/// time independent of its size; the others' from the scan cache.
fn run_figures(d: &Daemon) -> Result<Vec<(RunRecord, Figs)>> {
    let runs = records::list_runs(&*d.store)?;
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        if let Some(driver) = d.drivers.driver(&r.id) {
            if lock_figures(&driver).complete() {
                out.push((r, Figs::Live(driver)));
                continue;
            }
        }
        let scan = d
            .scans
            .get(&*d.store, &r, d.drivers.is_active(&r.id), TTL)?;
        out.push((r, Figs::Scan(scan)));
    }
    Ok(out)
}

/// Every stored run with its figures (cached, see [`super::scan`]), oldest first.
pub(crate) fn run_scans(d: &Daemon) -> Result<Vec<(RunRecord, std::sync::Arc<RunScan>)>> {
    let runs = records::list_runs(&*d.store)?;
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let scan = d
            .scans
            .get(&*d.store, &r, d.drivers.is_active(&r.id), TTL)?;
        out.push((r, scan));
    }
    d.scans
        .retain(&out.iter().map(|(r, _)| r.id.as_str()).collect());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn page_messages_are_escaped_and_views_filled_in() {
        let resp = render("signin", "<b>\"x\"</b>", StatusCode::UNAUTHORIZED);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers().get(header::CACHE_CONTROL).unwrap(),
            "no-store"
        );
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains("&lt;b&gt;&quot;x&quot;&lt;/b&gt;"), "{html}");
        assert!(!html.contains("<b>\"x\"</b>"));
        assert!(!html.contains("{{"), "every placeholder is filled");
        assert!(html.contains("<body data-view=\"signin\">"));
    }

    #[test]
    fn sign_in_sets_a_strict_http_only_cookie_and_redirects_home() {
        let resp = signed_in("abc123");
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers().get(header::LOCATION).unwrap(), "/");
        let cookie = resp.headers().get(header::SET_COOKIE).unwrap();
        assert_eq!(
            cookie,
            "portflow_token=abc123; Path=/; HttpOnly; SameSite=Strict"
        );
    }
}

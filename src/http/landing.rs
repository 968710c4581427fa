//! The landing page at `/`, as the Prometheus exporters have one: what runs (version, revision,
//! build date) and links to the metrics, the status and query API, the control API and the
//! runbooks, which the binary carries so they are there where it runs.

use hyper::StatusCode;

use super::{text_response, AppState, HttpResponse};

/// The runbooks of the shipped alerts (`docs/runbooks.md`), served at [`RUNBOOKS_PATH`].
const RUNBOOKS: &str = include_str!("../../docs/runbooks.md");
pub const RUNBOOKS_PATH: &str = "/docs/runbooks.md";

/// `/`: an HTML page of links. Paths are relative to the root, so the page also works behind
/// a reverse proxy that serves depin-orcha under its own root.
pub fn landing_page(state: &AppState) -> HttpResponse {
    let b = &state.build;
    let metrics = escape(&state.telemetry_path);
    let links: [(&str, &str); 12] = [
        (&metrics, "Metrics (Prometheus text format)"),
        ("-/healthy", "Health"),
        (
            "-/ready",
            "Readiness (the history is loaded, every node polled once)",
        ),
        ("api/v1/status/buildinfo", "Build information"),
        ("api/v1/rules", "Recording and alerting rules"),
        ("api/v1/alerts", "Active alerts"),
        (
            "api/v1/query?query=depin_adapter_up",
            "Query API: which nodes are up",
        ),
        ("api/v1/allocations", "Allocations of the nodes"),
        ("api/v1/plan", "The controller's plan of the moment"),
        ("api/v1/reallocations", "Reallocation history"),
        ("api/v1/events", "Live events (Server-Sent Events)"),
        (RUNBOOKS_PATH, "Runbooks of the shipped alerts"),
    ];
    let mut items = String::new();
    for (href, what) in links {
        let href = href.trim_start_matches('/');
        items.push_str(&format!(
            "<li><a href=\"{href}\">{}</a> <code>/{href}</code></li>\n",
            escape(what)
        ));
    }
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>depin-orcha</title></head>\n<body>\n\
<h1>depin-orcha</h1>\n\
<p>Watches DePIN nodes, keeps their time series, evaluates Prometheus rules and moves resources to where they earn most.</p>\n\
<p>Version {} (branch {}, revision {}), built {} with {}.</p>\n\
<ul>\n{items}</ul>\n</body>\n</html>\n",
        escape(&b.version),
        escape(&b.branch),
        escape(&b.revision),
        escape(&b.build_date),
        escape(&b.go_version),
    );
    text_response(StatusCode::OK, "text/html; charset=utf-8", body)
}

/// [`RUNBOOKS_PATH`]: the runbooks as Markdown text.
pub fn runbooks() -> HttpResponse {
    text_response(StatusCode::OK, "text/markdown; charset=utf-8", RUNBOOKS)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_page_links_the_telemetry_path_and_escapes_it() {
        let mut state = AppState::new(
            Arc::new(crate::tsdb::Db::in_memory()),
            crate::promql::Engine::default(),
            prometheus::Registry::new(),
            Arc::new(crate::clock::ManualClock::new(0)),
        );
        state.telemetry_path = "/x<y".into();
        let body = landing_page(&state).into_body().collect().await.unwrap();
        let body = String::from_utf8(body.to_bytes().to_vec()).unwrap();
        assert!(body.contains("<a href=\"x&lt;y\">"), "{body}");
        assert!(body.contains("<a href=\"docs/runbooks.md\">"), "{body}");
        assert!(RUNBOOKS.contains("## DepinNodeDown"));
    }
}

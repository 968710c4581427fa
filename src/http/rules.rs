//! The rules' HTTP routes, in Prometheus' shapes (`web/api/v1/api.go` `rules` and `alerts`,
//! `web/web.go` `reload`): `GET /api/v1/rules` (filters `type`, `rule_name[]`,
//! `rule_group[]`, `file[]`, `match[]`, `exclude_alerts`), `GET /api/v1/alerts`, and
//! `POST`/`PUT /-/reload`. Register with
//! `state.extra_routes.push(Arc::new(RulesApi::new(manager.clone())))`.
//!
//! Times are RFC 3339 in UTC as Go's `time.Time` marshals them; alert values are strings in
//! Go's `%e` form (`1e+00`), as Prometheus writes them.

use std::collections::HashSet;
use std::sync::Arc;

use hyper::{Method, StatusCode};

use super::json::{format_sample_value, push_labels, push_str};
use super::params::parse_match_sets;
use super::{
    api_response, text_response, ApiError, ApiSuccess, AppState, ExtraRoutes, HttpResponse,
    RouteRequest,
};
use crate::compat::strconv::format_float;
use crate::labels::Matcher;
use crate::rules::alerting::ActiveAlert;
use crate::rules::group::{Group, Rule, RuleStatus};
use crate::rules::manager::RuleManager;

const TEXT: &str = "text/plain; charset=utf-8";

/// The rules routes over a [`RuleManager`].
pub struct RulesApi {
    manager: Arc<RuleManager>,
    /// When set, `/-/reload` needs `Authorization: Bearer <token>`.
    reload_token: Option<String>,
    /// Other files `/-/reload` re-reads after the rule files (the optimization rules).
    also_reload: Vec<ReloadHook>,
}

/// A reload of another file, run by `/-/reload`; its error text goes into the response.
pub type ReloadHook = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

impl RulesApi {
    pub fn new(manager: Arc<RuleManager>) -> RulesApi {
        RulesApi {
            manager,
            reload_token: None,
            also_reload: Vec::new(),
        }
    }

    /// Requires a bearer token for `/-/reload` (the control API's token).
    pub fn with_reload_token(mut self, token: Option<String>) -> RulesApi {
        self.reload_token = token;
        self
    }

    /// `/-/reload` also runs `hook`; the reload succeeds only if every file loads.
    pub fn with_also_reload(mut self, hook: ReloadHook) -> RulesApi {
        self.also_reload.push(hook);
        self
    }

    /// The rule files, then every other file; each is tried even when one before failed (a
    /// file that loads is put in force), and every error is returned. `/-/reload` and SIGHUP.
    pub fn reload_all(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Err(e) = self.manager.reload() {
            errors.push(e.to_string());
        }
        for hook in &self.also_reload {
            if let Err(e) = hook() {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

impl ExtraRoutes for RulesApi {
    fn route(&self, state: &AppState, req: &RouteRequest<'_>) -> Option<HttpResponse> {
        let get = *req.method == Method::GET || *req.method == Method::HEAD;
        match req.path {
            "/api/v1/rules" | "/api/v1/alerts" if !state.is_ready() => Some(text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "Service Unavailable",
            )),
            "/api/v1/rules" | "/api/v1/alerts" if !get => {
                let mut r =
                    text_response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "Method Not Allowed\n");
                r.headers_mut().insert(
                    hyper::header::ALLOW,
                    hyper::header::HeaderValue::from_static("GET, HEAD"),
                );
                Some(r)
            }
            "/api/v1/rules" => Some(api_response(rules(&self.manager, req.params))),
            "/api/v1/alerts" => Some(api_response(Ok(alerts(&self.manager)))),
            "/-/reload" if *req.method == Method::POST || *req.method == Method::PUT => {
                if self.reload_token.is_some() {
                    if let Some(r) = super::unauthorized(req.headers, self.reload_token.as_deref())
                    {
                        return Some(r);
                    }
                }
                Some(match self.reload_all() {
                    Ok(()) => text_response(StatusCode::OK, TEXT, ""),
                    Err(e) => text_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        TEXT,
                        format!("failed to reload config: {e}\n"),
                    ),
                })
            }
            "/-/reload" => Some(text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                "This endpoint requires a POST request.\n",
            )),
            _ => None,
        }
    }
}

/// `data` of `GET /api/v1/alerts`: every alert that is pending or firing (not resolved).
pub fn alerts(manager: &RuleManager) -> ApiSuccess {
    let mut out = String::from("{\"alerts\":[");
    let mut first = true;
    for g in manager.groups() {
        let g = g.lock().unwrap_or_else(|e| e.into_inner());
        for r in g.group.alerting_rules() {
            for a in r.active_alerts() {
                if !first {
                    out.push(',');
                }
                first = false;
                push_alert(&mut out, a);
            }
        }
    }
    out.push_str("]}");
    ApiSuccess::data(out)
}

/// `data` of `GET /api/v1/rules`.
pub fn rules(manager: &RuleManager, p: &super::Params) -> Result<ApiSuccess, ApiError> {
    let typ = p.get("type").to_ascii_lowercase();
    if !typ.is_empty() && typ != "alert" && typ != "record" {
        return Err(ApiError::invalid_param(
            "type",
            format!("not supported value {typ:?}"),
        ));
    }
    let exclude_alerts = match p.get("exclude_alerts").to_ascii_lowercase().as_str() {
        "" => false,
        "1" | "t" | "true" => true,
        "0" | "f" | "false" => false,
        other => {
            return Err(ApiError::invalid_param(
                "exclude_alerts",
                format!("error converting exclude_alerts: strconv.ParseBool: parsing {other:?}: invalid syntax"),
            ))
        }
    };
    let names: HashSet<&str> = p.all("rule_name[]").into_iter().collect();
    let groups: HashSet<&str> = p.all("rule_group[]").into_iter().collect();
    let files: HashSet<&str> = p.all("file[]").into_iter().collect();
    let matcher_sets =
        parse_match_sets(&p.all("match[]")).map_err(|e| ApiError::bad_data(e.to_string()))?;
    let want_alerts = typ.is_empty() || typ == "alert";
    let want_records = typ.is_empty() || typ == "record";

    let mut out = String::from("{\"groups\":[");
    let mut first_group = true;
    for g in manager.groups() {
        let sg = g.lock().unwrap_or_else(|e| e.into_inner());
        let grp = &sg.group;
        if (!groups.is_empty() && !groups.contains(grp.name()))
            || (!files.is_empty() && !files.contains(grp.file()))
        {
            continue;
        }
        let mut rules_json = Vec::new();
        for r in grp.rules() {
            if !names.is_empty() && !names.contains(r.name()) {
                continue;
            }
            if !matcher_sets.is_empty() && !matcher_sets.iter().any(|set| matches_all(set, r)) {
                continue;
            }
            match r {
                Rule::Alerting(_) if !want_alerts => continue,
                Rule::Recording(_) if !want_records => continue,
                _ => {}
            }
            rules_json.push(rule_json(r, exclude_alerts));
        }
        // Prometheus leaves out groups whose rules were all filtered away.
        if rules_json.is_empty() {
            continue;
        }
        if !first_group {
            out.push(',');
        }
        first_group = false;
        push_group(&mut out, grp, &rules_json, manager);
    }
    out.push_str("]}");
    Ok(ApiSuccess::data(out))
}

fn matches_all(set: &[Matcher], r: &Rule) -> bool {
    set.iter().all(|m| m.matches_labels(r.labels()))
}

fn push_group(out: &mut String, g: &Group, rules: &[String], manager: &RuleManager) {
    out.push_str("{\"name\":");
    push_str(out, g.name());
    out.push_str(",\"file\":");
    push_str(out, g.file());
    out.push_str(",\"rules\":[");
    out.push_str(&rules.join(","));
    out.push_str("],\"interval\":");
    out.push_str(&format_sample_value(
        g.effective_interval_ms(manager.eval_context()) as f64 / 1000.0,
    ));
    out.push_str(",\"limit\":");
    out.push_str(&g.limit().to_string());
    out.push_str(",\"evaluationTime\":");
    out.push_str(&format_sample_value(g.evaluation_time().as_secs_f64()));
    out.push_str(",\"lastEvaluation\":");
    push_str(out, &rfc3339(g.last_evaluation()));
    out.push('}');
}

fn push_status(out: &mut String, st: &RuleStatus) {
    out.push_str(",\"health\":");
    push_str(out, st.health.as_str());
    if let Some(e) = &st.last_error {
        out.push_str(",\"lastError\":");
        push_str(out, e);
    }
    out.push_str(",\"evaluationTime\":");
    out.push_str(&format_sample_value(st.evaluation_duration.as_secs_f64()));
    out.push_str(",\"lastEvaluation\":");
    push_str(out, &rfc3339(st.last_evaluation));
}

fn rule_json(r: &Rule, exclude_alerts: bool) -> String {
    let mut out = String::new();
    match r {
        Rule::Alerting(a) => {
            out.push_str("{\"state\":");
            push_str(&mut out, a.state().map_or("unknown", |s| s.as_str()));
            out.push_str(",\"name\":");
            push_str(&mut out, a.name());
            out.push_str(",\"query\":");
            push_str(&mut out, &a.expr().to_string());
            out.push_str(",\"duration\":");
            out.push_str(&format_sample_value(a.hold_ms() as f64 / 1000.0));
            out.push_str(",\"keepFiringFor\":");
            out.push_str(&format_sample_value(a.keep_firing_for_ms() as f64 / 1000.0));
            out.push_str(",\"labels\":");
            push_labels(&mut out, a.labels());
            out.push_str(",\"annotations\":");
            push_labels(&mut out, a.annotations());
            out.push_str(",\"alerts\":");
            if exclude_alerts {
                out.push_str("null");
            } else {
                out.push('[');
                for (i, al) in a.active_alerts().into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_alert(&mut out, al);
                }
                out.push(']');
            }
            push_status(&mut out, a.status());
            out.push_str(",\"type\":\"alerting\"}");
        }
        Rule::Recording(rr) => {
            out.push_str("{\"name\":");
            push_str(&mut out, rr.name());
            out.push_str(",\"query\":");
            push_str(&mut out, &rr.expr().to_string());
            // `omitempty` in Prometheus 2.x (the version we compare against); alerting
            // rules always have the key.
            if !rr.labels().is_empty() {
                out.push_str(",\"labels\":");
                push_labels(&mut out, rr.labels());
            }
            push_status(&mut out, rr.status());
            out.push_str(",\"type\":\"recording\"}");
        }
    }
    out
}

fn push_alert(out: &mut String, a: &ActiveAlert) {
    out.push_str("{\"labels\":");
    push_labels(out, &a.labels);
    out.push_str(",\"annotations\":");
    push_labels(out, &a.annotations);
    out.push_str(",\"state\":");
    push_str(out, a.state.as_str());
    out.push_str(",\"activeAt\":");
    push_str(out, &rfc3339(Some(a.active_at)));
    if let Some(k) = a.keep_firing_since {
        out.push_str(",\"keepFiringSince\":");
        push_str(out, &rfc3339(Some(k)));
    }
    out.push_str(",\"value\":");
    push_str(out, &format_float(a.value, 'e', -1));
    out.push('}');
}

/// A millisecond timestamp as Go marshals a UTC `time.Time` (RFC 3339 with trailing zeros of
/// the fraction dropped); `None` is Go's zero time.
pub fn rfc3339(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "0001-01-01T00:00:00Z".into();
    };
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Params;
    use crate::rules::manager::tests::fixture;
    use http_body_util::BodyExt;

    const MIN: i64 = 60_000;

    const RULES: &str = r#"groups:
  - name: g
    interval: 1m
    labels: {team: ops}
    rules:
      - record: job:x:sum
        expr: sum by (job) (x)
      - alert: High
        expr: x > 1
        for: 2m
        keep_firing_for: 30s
        labels: {severity: page}
        annotations: {summary: "{{ $labels.job }} is {{ $value }}"}
"#;

    /// The evaluation durations are wall time: blank them out.
    fn stable(json: &str) -> String {
        let re = regex::Regex::new(r#""evaluationTime":[0-9.e+-]+"#).unwrap();
        re.replace_all(json, r#""evaluationTime":0"#).into_owned()
    }

    fn data(r: Result<ApiSuccess, ApiError>) -> String {
        stable(&r.unwrap().data.unwrap())
    }

    #[test]
    fn rules_and_alerts_in_prometheus_shapes() {
        let f = fixture(RULES);
        let m = &f.manager;
        // Never evaluated: health unknown, state unknown, Go's zero time.
        let fresh = data(rules(m, &Params::default()));
        assert!(fresh.contains(r#""state":"unknown""#), "{fresh}");
        assert!(
            fresh.contains(
                r#""health":"unknown","evaluationTime":0,"lastEvaluation":"0001-01-01T00:00:00Z""#
            ),
            "{fresh}"
        );

        m.tick(0);
        let first = m.groups()[0].lock().unwrap().group.last_evaluation();
        assert!(first.is_none());
        let slot = {
            let g = m.groups();
            let g = g[0].lock().unwrap();
            g.group.effective_interval_ms(m.eval_context())
        };
        assert_eq!(slot, MIN);
        // The fixture's x runs from 0 to 60m.
        let base = 10 * MIN;
        let mut t = base;
        while m.groups()[0]
            .lock()
            .unwrap()
            .group
            .last_evaluation()
            .is_none()
        {
            m.tick(t);
            t += 1000;
        }
        let at = m.groups()[0]
            .lock()
            .unwrap()
            .group
            .last_evaluation()
            .unwrap();
        let at_s = rfc3339(Some(at));
        let got = data(rules(m, &Params::default()));
        let want = format!(
            concat!(
                r#"{{"groups":[{{"name":"g","file":"{file}","rules":["#,
                r#"{{"name":"job:x:sum","query":"sum by (job) (x)","labels":{{"team":"ops"}},"health":"ok","evaluationTime":0,"lastEvaluation":"{at}","type":"recording"}},"#,
                r#"{{"state":"pending","name":"High","query":"x \u003e 1","duration":120,"keepFiringFor":30,"labels":{{"severity":"page","team":"ops"}},"#,
                r#""annotations":{{"summary":"{{{{ $labels.job }}}} is {{{{ $value }}}}"}},"#,
                r#""alerts":[{{"labels":{{"alertname":"High","job":"a","severity":"page","team":"ops"}},"annotations":{{"summary":"a is 5"}},"state":"pending","activeAt":"{at}","value":"5e+00"}}],"#,
                r#""health":"ok","evaluationTime":0,"lastEvaluation":"{at}","type":"alerting"}}],"#,
                r#""interval":60,"limit":0,"evaluationTime":0,"lastEvaluation":"{at}"}}]}}"#
            ),
            file = f
                .dir
                .path()
                .join("*.yml")
                .parent()
                .unwrap()
                .join("a.yml")
                .display(),
            at = at_s
        );
        assert_eq!(got, want);

        let alerts_json = alerts(m).data.unwrap();
        assert_eq!(
            alerts_json,
            format!(
                r#"{{"alerts":[{{"labels":{{"alertname":"High","job":"a","severity":"page","team":"ops"}},"annotations":{{"summary":"a is 5"}},"state":"pending","activeAt":"{at_s}","value":"5e+00"}}]}}"#
            )
        );

        // Filters.
        let only =
            |pairs: &[(&str, &str)]| data(rules(m, &Params::from_pairs(pairs.iter().copied())));
        assert!(!only(&[("type", "record")]).contains("High"));
        assert!(!only(&[("type", "alert")]).contains("job:x:sum"));
        assert_eq!(only(&[("rule_group[]", "nope")]), r#"{"groups":[]}"#);
        assert_eq!(only(&[("file[]", "nope.yml")]), r#"{"groups":[]}"#);
        assert!(only(&[("rule_name[]", "High")]).contains(r#""rules":[{"state""#));
        assert!(only(&[("match[]", r#"{severity="page"}"#)]).contains(r#""rules":[{"state""#));
        assert!(only(&[("exclude_alerts", "true")]).contains(r#""alerts":null"#));
        let e = rules(m, &Params::from_pairs([("type", "foo")])).unwrap_err();
        assert_eq!(
            e.message,
            r#"invalid parameter "type": not supported value "foo""#
        );
    }

    #[test]
    fn formats_match_go() {
        assert_eq!(format_float(1.0, 'e', -1), "1e+00");
        assert_eq!(format_float(123.456, 'e', -1), "1.23456e+02");
        assert_eq!(format_float(1.5e-7, 'e', -1), "1.5e-07");
        assert_eq!(format_float(f64::INFINITY, 'e', -1), "+Inf");
        assert_eq!(rfc3339(Some(1_700_000_000_120)), "2023-11-14T22:13:20.12Z");
        assert_eq!(rfc3339(Some(0)), "1970-01-01T00:00:00Z");
    }

    async fn call(
        api: &RulesApi,
        state: &AppState,
        method: Method,
        path: &str,
    ) -> (StatusCode, String) {
        let params = Params::default();
        let headers = hyper::HeaderMap::new();
        let body = bytes::Bytes::new();
        let req = RouteRequest {
            method: &method,
            path,
            params: &params,
            headers: &headers,
            body: &body,
        };
        let resp = api.route(state, &req).expect("route owns the path");
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn reload_route_answers_200_or_500_with_the_error() {
        let f = fixture(RULES);
        let state = AppState::new(
            f.db.clone(),
            crate::promql::Engine::default(),
            prometheus::Registry::new(),
            Arc::new(f.clock.clone()),
        );
        state.set_ready(true);
        let api = RulesApi::new(f.manager.clone());
        assert_eq!(
            call(&api, &state, Method::POST, "/-/reload").await,
            (StatusCode::OK, String::new())
        );
        std::fs::write(
            f.dir.path().join("a.yml"),
            "groups: [{name: g, rules: [{record: 'a b', expr: x}]}]\n",
        )
        .unwrap();
        let (status, body) = call(&api, &state, Method::PUT, "/-/reload").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.starts_with("failed to reload config: "), "{body}");
        assert!(
            body.contains(
                "a.yml:1:29: group \"g\", rule 1, \"a b\": invalid recording rule name: a b"
            ),
            "{body}"
        );
        assert_eq!(
            call(&api, &state, Method::GET, "/-/reload").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let (status, body) = call(&api, &state, Method::GET, "/api/v1/rules").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.starts_with(r#"{"status":"success","data":{"groups":[{"name":"g""#),
            "{body}"
        );
        assert_eq!(
            call(&api, &state, Method::POST, "/api/v1/alerts").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        state.set_ready(false);
        assert_eq!(
            call(&api, &state, Method::GET, "/api/v1/alerts").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

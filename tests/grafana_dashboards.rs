//! The Grafana dashboards (`grafana/dashboards/*.json`), provisioning and compose files, checked
//! without Grafana (none is installed where the tests run):
//!
//! - the JSON model: schemaVersion ≥ 39, unique panel ids, gridPos inside 24 columns and not
//!   overlapping, a unit on every panel that queries, the `$datasource` (type prometheus) and
//!   `$instance` variables, and every selector of every query filtered by
//!   `instance=~"$instance"`;
//! - every query (panels, annotations, variables), with Grafana's variables substituted, parses
//!   with depin-orcha's PromQL parser and returns data from the real binary (embedded demo
//!   nodes, shipped rules loaded), from a real Prometheus 2.42 scraping that binary and
//!   loading the same rules, and from a Prometheus fed only by the binary's remote write. A
//!   query or a panel that shows nothing fails: there is no allowlist;
//! - the provisioning files point at the paths docker-compose.yml mounts, and the Prometheus
//!   config the compose file uses passes `promtool check config`.
//!
//! Without /usr/bin/prometheus or promtool those comparisons are skipped with a note; with
//! `CI=true` their absence fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = root().join("grafana/dashboards");
    let mut v: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .to_string();
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            (name, json)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = v.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["controller.json", "node.json", "overview.json"] {
        assert!(
            names.contains(&want),
            "grafana/dashboards/{want} is missing: {names:?}"
        );
    }
    v
}

/// Every panel, those inside collapsed rows included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

/// One query of a dashboard: a panel target, an annotation or a variable's selector.
#[derive(Clone, Debug)]
struct Query {
    dashboard: String,
    /// Panel title, `annotation: <name>` or `variable: <name>`.
    owner: String,
    ref_id: String,
    expr: String,
    instant: bool,
    /// For variables: the label whose values Grafana lists.
    label: Option<String>,
}

impl Query {
    fn what(&self) -> String {
        format!(
            "{} / {} / {}: {}",
            self.dashboard, self.owner, self.ref_id, self.expr
        )
    }
}

/// `label_values(<selector>, <label>)` → (selector, label).
/// The `label` of the host picker's query: its values come from `instance` or `host`.
const HOST_LABELS: &str = "instance|host";

fn label_values(q: &str) -> Option<(String, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (sel, label) = inner.rsplit_once(',')?;
    Some((sel.trim().to_string(), label.trim().to_string()))
}

fn queries(name: &str, d: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(d) {
        let title = p["title"].as_str().unwrap_or("").to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} / {title}: a target without expr"));
            out.push(Query {
                dashboard: name.into(),
                owner: title.clone(),
                ref_id: t["refId"].as_str().unwrap_or("").into(),
                expr: expr.into(),
                instant: t["instant"].as_bool().unwrap_or(false)
                    && !t["range"].as_bool().unwrap_or(false),
                label: None,
            });
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            if let Some(t) = a["target"]["expr"].as_str() {
                assert_eq!(
                    t, expr,
                    "{name}: annotation {}: target.expr differs from expr",
                    a["name"]
                );
            }
            out.push(Query {
                dashboard: name.into(),
                owner: format!("annotation: {}", a["name"].as_str().unwrap_or("")),
                ref_id: String::new(),
                expr: expr.into(),
                instant: false,
                label: None,
            });
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        // The host picker lists both fleet labels from one query's series.
        let (sel, label) = match q
            .trim()
            .strip_prefix("query_result(")
            .and_then(|r| r.strip_suffix(')'))
        {
            Some(inner) => (inner.to_string(), HOST_LABELS.to_string()),
            None => label_values(q).unwrap_or_else(|| {
                panic!(
                    "{name}: variable {}: not label_values(selector, label) nor query_result(expr): {q}",
                    v["name"]
                )
            }),
        };
        out.push(Query {
            dashboard: name.into(),
            owner: format!("variable: {}", v["name"].as_str().unwrap_or("")),
            ref_id: String::new(),
            expr: sel,
            instant: true,
            label: Some(label),
        });
    }
    out
}

/// Grafana's variables replaced as Grafana would for one choice: `$instance` by `instance`,
/// `$node` by `node`, `$protocol` by `.*` (All), the interval variables by durations that
/// suit a data source scraped every second and a test that runs for a minute.
fn substitute(expr: &str, instance: &str, host: &str, node: &str) -> String {
    let s = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("$instance", instance)
        .replace("$host", host)
        .replace("$node", node)
        .replace("$protocol", ".*");
    assert!(!s.contains('$'), "a variable is left unsubstituted in {s}");
    s
}

/// Every vector selector in `e`.
fn selectors(e: &Expr, out: &mut Vec<promql_parser::parser::VectorSelector>) {
    match e {
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::VectorSelector(v) => out.push(v.clone()),
        Expr::MatrixSelector(m) => out.push(m.vs.clone()),
        Expr::Call(c) => {
            for a in &c.args.args {
                selectors(a, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

#[test]
fn dashboards_are_valid_grafana_json_models() {
    for (name, d) in dashboards() {
        let schema = d["schemaVersion"].as_u64().unwrap_or(0);
        assert!(schema >= 39, "{name}: schemaVersion {schema} < 39");
        assert!(
            d["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty() && u.len() <= 40),
            "{name}: uid"
        );
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: title"
        );

        // grafana.com's export format: the data source to pick at import, what it requires.
        let inputs = d["__inputs"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: __inputs"));
        assert!(
            inputs
                .iter()
                .any(|i| i["type"] == "datasource" && i["pluginId"] == "prometheus"),
            "{name}: __inputs names a Prometheus data source"
        );
        let requires = d["__requires"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: __requires"));
        for (kind, id) in [("grafana", "grafana"), ("datasource", "prometheus")] {
            assert!(
                requires.iter().any(|r| r["type"] == kind && r["id"] == id),
                "{name}: __requires {kind} {id}"
            );
        }
        for p in panels(&d) {
            if let Some(t) = p["type"].as_str().filter(|t| *t != "row") {
                assert!(
                    requires
                        .iter()
                        .any(|r| r["type"] == "panel" && r["id"] == t),
                    "{name}: __requires lacks panel {t}"
                );
            }
        }
        if name == "overview.json" {
            // Drill-down: the node table's `node` cells open the node dashboard on that node,
            // host and data source.
            let table = panels(&d)
                .into_iter()
                .find(|p| p["title"] == "Nodes")
                .expect("the Nodes table");
            let links = format!("{}", table["fieldConfig"]["overrides"]);
            for part in [
                "/d/depin-orcha-node/",
                "var-node=${__data.fields.node}",
                "var-host=${__data.fields.instance}${__data.fields.host}",
                "${datasource:queryparam}",
                "${__url_time_range}",
            ] {
                assert!(
                    links.contains(part),
                    "{name}: node link lacks {part}: {links}"
                );
            }
            let node_uid = dashboards()
                .into_iter()
                .find(|(n, _)| n == "node.json")
                .map(|(_, d)| d["uid"].clone())
                .expect("node.json");
            assert_eq!(node_uid, "depin-orcha-node");
        }
        // Legends tell hosts apart: a series per node or host names its instance or host.
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let (e, l) = (
                    t["expr"].as_str().unwrap_or(""),
                    t["legendFormat"].as_str().unwrap_or(""),
                );
                if e.contains("by (instance, host") && !l.is_empty() {
                    assert!(
                        l.contains("{{instance}}{{host}}"),
                        "{name} / {}: legend {l:?} of a per-host query lacks {{{{instance}}}}{{{{host}}}}",
                        p["title"]
                    );
                }
            }
        }

        // Variables: $datasource lists Prometheus data sources, $instance is a multi-value
        // query variable whose All matches series without an instance label too.
        let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| (v["name"].as_str().unwrap_or(""), v))
            .collect();
        let ds = vars
            .get("datasource")
            .unwrap_or_else(|| panic!("{name}: no $datasource variable"));
        assert_eq!(ds["type"], "datasource", "{name}: $datasource");
        assert_eq!(
            ds["query"], "prometheus",
            "{name}: $datasource lists Prometheus data sources"
        );
        // One host picker: $host lists the scraped (instance) and the pushing (host) hosts.
        assert!(
            !vars.contains_key("instance"),
            "{name}: a second host picker ($instance)"
        );
        let inst = vars
            .get("host")
            .unwrap_or_else(|| panic!("{name}: no $host variable"));
        assert_eq!(inst["type"], "query", "{name}: $host");
        assert_eq!(inst["label"], "Host", "{name}: $host");
        assert_eq!(inst["includeAll"], true, "{name}: $host has All");
        assert_eq!(
            inst["allValue"], ".*",
            "{name}: $host's All must be .* (matches the absent label)"
        );
        if name == "node.json" {
            assert!(
                vars.contains_key("node") && vars.contains_key("protocol"),
                "{name}: $node and $protocol"
            );
        }
        for (vn, v) in &vars {
            if v["type"] == "query" {
                assert_eq!(
                    v["datasource"]["uid"], "${datasource}",
                    "{name}: variable {vn} uses $datasource"
                );
            }
        }

        let ps = panels(&d);
        assert!(ps.len() >= 8, "{name}: only {} panels", ps.len());
        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
        for p in &ps {
            let title = p["title"].as_str().unwrap_or("").to_string();
            let id = p["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{name} / {title}: no id"));
            assert!(
                ids.insert(id),
                "{name}: panel id {id} is used twice ({title})"
            );
            let g = &p["gridPos"];
            let b = ["x", "y", "w", "h"].map(|k| {
                g[k].as_i64()
                    .unwrap_or_else(|| panic!("{name} / {title}: gridPos.{k}"))
            });
            assert!(
                b[0] >= 0 && b[1] >= 0 && b[2] > 0 && b[3] > 0 && b[0] + b[2] <= 24,
                "{name} / {title}: gridPos {b:?} outside 24 columns"
            );
            for (other, o) in &boxes {
                let overlap = b[0] < o[0] + o[2]
                    && o[0] < b[0] + b[2]
                    && b[1] < o[1] + o[3]
                    && o[1] < b[1] + b[3];
                assert!(!overlap, "{name}: {title} {b:?} overlaps {other} {o:?}");
            }
            boxes.push((title.clone(), b));
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if !targets.is_empty() {
                let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
                assert!(!unit.is_empty(), "{name} / {title}: no unit");
                assert_eq!(
                    p["datasource"]["uid"], "${datasource}",
                    "{name} / {title}: panel data source"
                );
                let mut refs = BTreeSet::new();
                for t in &targets {
                    assert_eq!(
                        t["datasource"]["uid"], "${datasource}",
                        "{name} / {title}: target data source"
                    );
                    assert!(
                        refs.insert(t["refId"].as_str().unwrap_or("").to_string()),
                        "{name} / {title}: refId twice"
                    );
                }
            }
        }
    }
}

/// Every query parses with depin-orcha's parser, and every selector in it carries
/// `instance=~"$instance"` (so one Grafana shows one host of a fleet).
#[test]
fn every_query_parses_and_filters_by_instance() {
    const SENTINEL: &str = "__instance_variable__";
    const HOST: &str = "__host_variable__";
    let mut n = 0;
    for (name, d) in dashboards() {
        for q in queries(&name, &d) {
            let text = substitute(&q.expr, SENTINEL, HOST, "storj");
            let e = depin_orcha::promql::parse(&text)
                .unwrap_or_else(|e| panic!("{}: does not parse: {e}", q.what()));
            let mut sels = Vec::new();
            selectors(&e, &mut sels);
            if q.label.as_deref() == Some(HOST_LABELS) {
                // The variables that list the hosts cannot filter by themselves.
                continue;
            }
            assert!(
                !sels.is_empty() || q.expr.contains("vector("),
                "{}: no selector",
                q.what()
            );
            for s in sels {
                let value = format!("{HOST}|");
                for label in ["instance", "host"] {
                    let ok = s.matchers.matchers.iter().any(|m| {
                        m.name == label && matches!(m.op, MatchOp::Re(_)) && m.value == value
                    });
                    assert!(
                        ok,
                        "{}: selector {s} does not filter by {label}=~\"$host|\"",
                        q.what()
                    );
                }
            }
            n += 1;
        }
    }
    assert!(n >= 60, "only {n} queries");
}

// ---------------------------------------------------------------------------------------------
// Live: the real binary and a real Prometheus.

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The result of `expr` (an instant query, or a range query over the last 30 s), or the error.
fn query(addr: SocketAddr, expr: &str, instant: bool) -> Result<Vec<Value>, String> {
    let now = now_s();
    let path = if instant {
        format!("/api/v1/query?query={}&time={now:.3}", enc(expr))
    } else {
        format!(
            "/api/v1/query_range?query={}&start={:.3}&end={now:.3}&step=2",
            enc(expr),
            now - 30.0
        )
    };
    let r = common::try_http(addr, "GET", &path, None).map_err(|e| e.to_string())?;
    let j: Value =
        serde_json::from_str(&r.body).map_err(|e| format!("HTTP {}: {e}: {}", r.status, r.body))?;
    if j["status"] != "success" {
        return Err(format!("HTTP {}: {}", r.status, r.body));
    }
    Ok(j["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Whether `expr` shows anything on one backend; for a variable (`label`), whether its series
/// carry the label.
fn has_data(
    addr: SocketAddr,
    expr: &str,
    instant: bool,
    label: Option<&str>,
) -> Result<bool, String> {
    let res = query(addr, expr, instant)?;
    let Some(l) = label else {
        return Ok(!res.is_empty());
    };
    if l == HOST_LABELS {
        // query_result: Grafana reads the values out of the series' text.
        return Ok(res.iter().any(|s| {
            ["instance", "host"]
                .iter()
                .any(|l| s["metric"][*l].as_str().is_some_and(|v| !v.is_empty()))
        }));
    }
    let in_series = res
        .iter()
        .any(|s| s["metric"][l].as_str().is_some_and(|v| !v.is_empty()));
    // What Grafana asks for label_values(selector, label): the label values endpoint with
    // match[]; it must agree with the series.
    let now = now_s();
    let path = format!(
        "/api/v1/label/{l}/values?match[]={}&start={:.3}&end={now:.3}",
        enc(expr),
        now - 300.0
    );
    let r = common::try_http(addr, "GET", &path, None).map_err(|e| e.to_string())?;
    let j: Value = serde_json::from_str(&r.body)
        .map_err(|e| format!("{path}: HTTP {}: {e}: {}", r.status, r.body))?;
    if j["status"] != "success" {
        return Err(format!("{path}: HTTP {}: {}", r.status, r.body));
    }
    let listed = j["data"].as_array().is_some_and(|v| !v.is_empty());
    if listed != in_series {
        return Err(format!(
            "{path} lists {} but the series {} the label",
            j["data"],
            if in_series { "carry" } else { "lack" }
        ));
    }
    Ok(listed)
}

/// The substituted forms of `q` that must each show data: node.json's queries once per demo
/// node (the Storj ones for the Storj node only), the others once.
fn variants(q: &Query, instance: &str, host: &str, nodes: &[&str]) -> Vec<String> {
    if q.dashboard == "node.json" && q.expr.contains("$node") {
        let ns: Vec<&str> = if q.expr.contains("depin_storj_") {
            vec!["storj"]
        } else {
            nodes.to_vec()
        };
        ns.iter()
            .map(|n| substitute(&q.expr, instance, host, n))
            .collect()
    } else {
        vec![substitute(&q.expr, instance, host, "storj")]
    }
}

#[test]
fn every_panel_shows_data_from_depin_orcha_and_from_prometheus() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The embedded demo, polled, scraped and evaluated every second so the test needs seconds
    // of history rather than minutes.
    let demo = depin_orcha::config::DEMO_YAML.replace(
        "global:\n  poll_interval: 5s\n  poll_timeout: 4s\n  scrape_interval: 5s\n",
        "global:\n  poll_interval: 1s\n  poll_timeout: 1s\n  scrape_interval: 1s\n  evaluation_interval: 1s\n",
    );
    assert!(
        demo.contains("evaluation_interval: 1s"),
        "the demo's global block changed; adapt this test"
    );
    // A fleet host as well: every stored sample is pushed with remote write, labelled
    // host="grafana-test", to a central Prometheus (started below) that evaluates no rules.
    let central_port = common::free_port();
    let demo = demo.replacen(
        "global:\n",
        "global:\n  external_labels:\n    host: grafana-test\n",
        1,
    ) + &format!(
        "remote_write:\n  - url: http://127.0.0.1:{central_port}/api/v1/write\n    \
         queue_config:\n      batch_send_deadline: 1s\n      max_backoff: 1s\n"
    );
    let config = tmp.path().join("demo.yml");
    std::fs::write(&config, demo).expect("write config");
    let recording = root()
        .join("rules/prometheus/recording.yml")
        .display()
        .to_string();
    let alerts = root()
        .join("rules/prometheus/alerts.yml")
        .display()
        .to_string();
    // The shipped optimization rules plan every 5 minutes; plan every second so the controller's
    // series (plans, gate verdicts) exist within the test.
    let optimization = tmp.path().join("optimization.yml");
    let shipped = std::fs::read_to_string(root().join("rules/optimization.yml"))
        .expect("read rules/optimization.yml");
    let fast = common::with_planning_interval(&shipped, "1s");
    // Grass gets an exec actuator whose command does nothing: the node never reports the new
    // allocation, so verification fails and the move is rolled back (the "undone" annotation,
    // and the shipped DepinReallocationRolledBack alert for the firing-alerts table).
    let (head, grass) = fast
        .split_once("\n  grass:\n")
        .expect("rules/optimization.yml has no `grass:` node block: adapt this test");
    let grass = grass.replacen(
        "    actuator: sim\n",
        "    actuator: { kind: exec, command: [\"true\"] }\n",
        1,
    );
    assert!(
        grass.contains("kind: exec"),
        "grass block has no `actuator: sim`"
    );
    std::fs::write(&optimization, format!("{head}\n  grass:\n{grass}"))
        .expect("write optimization rules");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "grafana-test-token\n").expect("write token");
    let orcha = common::Orcha::start(&[
        "--optimization.rules-file",
        &optimization.display().to_string(),
        "--config.file",
        &config.display().to_string(),
        "--storage.path",
        &tmp.path().join("orcha").display().to_string(),
        "--rules.file",
        &recording,
        "--rules.file",
        &alerts,
        "--web.auth-token-file",
        &token_file.display().to_string(),
    ]);
    orcha.wait_ready();

    let prom = common::prometheus_bin().map(|bin| {
        let cfg = tmp.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {recording}\n  - {alerts}\n\
                 scrape_configs:\n  - job_name: depin-orcha\n    static_configs:\n      - targets: ['{}']\n",
                orcha.addr
            ),
        )
        .expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().expect("addr");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", tmp.path().join("prom").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        (common::KillOnDrop(child), addr)
    });

    let central = common::prometheus_bin().map(|bin| {
        let cfg = tmp.path().join("central.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1s\n").expect("write central.yml");
        let addr: SocketAddr = format!("127.0.0.1:{central_port}").parse().expect("addr");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("central").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the central prometheus");
        (common::KillOnDrop(child), addr)
    });

    // What an operator does through the control API: one move that applies (Storj's disk, a
    // sim actuator) and one that is rolled back (Grass, the do-nothing exec actuator). The
    // controller's own plans need an hour of history before the gates let them through.
    // Prometheus must have scraped the counters at 0 first, or it never sees them increase.
    // The same for the central store and the first push.
    for (_, addr) in prom.iter().chain(central.iter()) {
        common::wait_until(
            Duration::from_secs(20),
            "Prometheus' first sample of depin_reallocations_total",
            || query(*addr, "depin_reallocations_total", true).is_ok_and(|r| !r.is_empty()),
        );
    }
    let applied = common::post_json_with_token(
        orcha.addr,
        "/api/v1/reallocations",
        "grafana-test-token",
        r#"{"allocations":{"storj":{"disk_bytes":1.4e12}}}"#,
    );
    assert_eq!(applied.status, 202, "{}", applied.body);
    common::wait_until(
        Duration::from_secs(20),
        "the Storj move to be applied",
        || reallocation_outcomes(orcha.addr).contains(&"applied".to_string()),
    );
    let undone = common::post_json_with_token(
        orcha.addr,
        "/api/v1/reallocations",
        "grafana-test-token",
        r#"{"allocations":{"grass":{"bandwidth_bytes_per_second":1e6}}}"#,
    );
    assert_eq!(undone.status, 202, "{}", undone.body);

    let all: Vec<Query> = dashboards()
        .iter()
        .flat_map(|(n, d)| queries(n, d))
        .collect();
    let nodes = ["storj", "golem", "streamr", "grass"];
    // depin-orcha's own store has neither label, so only All (.*) applies there; a scraping
    // Prometheus adds `instance`, a central store fed by remote write has `host` (the
    // external label): their real values are checked as well.
    let mut backends = vec![Backend::new("depin-orcha", orcha.addr, None, ".*", ".*")];
    if let Some((_, addr)) = &prom {
        backends.push(Backend::new(
            "prometheus",
            *addr,
            Some("instance"),
            ".*",
            ".*",
        ));
        let inst = orcha.addr.to_string();
        backends.push(Backend::new(
            &format!("prometheus, instance {inst}"),
            *addr,
            Some("instance"),
            &inst,
            &inst,
        ));
    }
    if let Some((_, addr)) = &central {
        backends.push(Backend::new(
            "central Prometheus fed by remote write, host grafana-test",
            *addr,
            Some("host"),
            ".*",
            "grafana-test",
        ));
    }

    // Every (backend, query, variant) once; those still empty are asked again until every
    // requirement holds or the time is up: rates need two samples, recorded series one rule
    // evaluation after those.
    let mut cells: Vec<Cell> = Vec::new();
    for (b, be) in backends.iter().enumerate() {
        for (i, q) in all.iter().enumerate() {
            for (v, expr) in variants(q, &be.instance, &be.host, &nodes)
                .into_iter()
                .enumerate()
            {
                cells.push(Cell {
                    backend: b,
                    query: i,
                    variant: v,
                    expr,
                    data: false,
                });
            }
        }
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(45);
    let mut errors: Vec<String> = Vec::new();
    let mut unmet;
    loop {
        for c in cells.iter_mut().filter(|c| !c.data) {
            let q = &all[c.query];
            let be = &backends[c.backend];
            // The $instance and $host variables list label values a backend may not have
            // (depin-orcha has neither); their All (.*) still works: there the selector only
            // has to return series.
            let label = match q.label.as_deref() {
                Some(HOST_LABELS) if be.fleet_label.is_none() => None,
                l => l,
            };
            match has_data(be.addr, &c.expr, q.instant, label) {
                Ok(d) => c.data = d,
                Err(e) => errors.push(format!("{} on {}: {e}", q.what(), be.name)),
            }
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        unmet = unmet_requirements(&all, &cells, &backends);
        if unmet.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "{} queries, {} evaluations on {} backends, in {:.1}s",
        all.len(),
        cells.len(),
        backends.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(
        unmet.is_empty(),
        "panels that show nothing:\n{}",
        unmet.join("\n")
    );
}

/// The outcomes in the reallocation history, newest first.
fn reallocation_outcomes(addr: SocketAddr) -> Vec<String> {
    let r = common::http(addr, "GET", "/api/v1/reallocations", None);
    let j: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    j["data"]["reallocations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["outcome"].as_str().map(str::to_string))
        .collect()
}

/// A store the dashboards are checked against, and the variable values used there.
struct Backend {
    name: String,
    addr: SocketAddr,
    /// The fleet label its series carry: `instance` (scraped), `host` (pushed), or none.
    fleet_label: Option<&'static str>,
    instance: String,
    host: String,
}

impl Backend {
    fn new(
        name: &str,
        addr: SocketAddr,
        fleet_label: Option<&'static str>,
        instance: &str,
        host: &str,
    ) -> Backend {
        Backend {
            name: name.to_string(),
            addr,
            fleet_label,
            instance: instance.to_string(),
            host: host.to_string(),
        }
    }
}

/// One query, substituted for one variant, asked of one backend.
struct Cell {
    backend: usize,
    query: usize,
    variant: usize,
    expr: String,
    data: bool,
}

/// What still shows nothing: every query must show data on every
/// backend for at least one variant (a node may lack a series, e.g. Golem reports no disk
/// usage), and every panel must show something for every variant (every node).
fn unmet_requirements(all: &[Query], cells: &[Cell], backends: &[Backend]) -> Vec<String> {
    let mut unmet = Vec::new();
    let mut by_query: BTreeMap<(usize, usize), bool> = BTreeMap::new();
    // (backend, dashboard, owner, variant) → any data
    let mut by_panel: BTreeMap<(usize, String, String, usize), bool> = BTreeMap::new();
    for c in cells {
        let q = &all[c.query];
        *by_query.entry((c.backend, c.query)).or_default() |= c.data;
        *by_panel
            .entry((c.backend, q.dashboard.clone(), q.owner.clone(), c.variant))
            .or_default() |= c.data;
    }
    for ((b, i), data) in &by_query {
        let q = &all[*i];
        if !data {
            unmet.push(format!("{} on {}", q.what(), backends[*b].name));
        }
    }
    for ((b, d, o, v), data) in &by_panel {
        if !data {
            unmet.push(format!(
                "{d} / {o}: no query shows data on {} for variant {v} ($node)",
                backends[*b].name
            ));
        }
    }
    unmet
}

// ---------------------------------------------------------------------------------------------
// Provisioning and compose.

fn yaml(rel: &str) -> serde_yaml::Value {
    let p = root().join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: not YAML: {e}"))
}

/// `./host:/container[:ro]` volume strings of a compose service → (host, container).
fn mounts(service: &serde_yaml::Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter_map(|v| {
            let mut parts = v.split(':');
            let host = parts.next()?;
            let container = parts.next()?;
            host.starts_with("./")
                .then(|| (host.to_string(), container.to_string()))
        })
        .collect()
}

/// The host path that `container_path` comes from in `service`, by the longest mount prefix.
fn host_path_of(service: &serde_yaml::Value, container_path: &str) -> Option<PathBuf> {
    mounts(service)
        .into_iter()
        .filter(|(_, c)| container_path == c || container_path.starts_with(&format!("{c}/")))
        .max_by_key(|(_, c)| c.len())
        .map(|(h, c)| {
            let host = root().join(h.trim_start_matches("./"));
            match container_path[c.len()..].trim_start_matches('/') {
                "" => host,
                rest => host.join(rest),
            }
        })
}

#[test]
fn provisioning_and_compose_fit_together() {
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    for s in ["depin-orcha", "prometheus", "alertmanager", "grafana"] {
        assert!(
            services[s].is_mapping(),
            "docker-compose.yml: no service {s}"
        );
        for (host, _) in mounts(&services[s]) {
            assert!(
                root().join(host.trim_start_matches("./")).exists(),
                "docker-compose.yml: {s} mounts {host}, which does not exist"
            );
        }
    }
    let grafana = &services["grafana"];

    // Data sources: a Prometheus and depin-orcha itself, both type prometheus, at the compose
    // service names and ports.
    let ds = yaml("grafana/provisioning/datasources/depin-orcha.yml");
    let list = ds["datasources"]
        .as_sequence()
        .expect("datasources: a list");
    let urls: BTreeMap<&str, &str> = list
        .iter()
        .map(|d| {
            (
                d["uid"].as_str().unwrap_or(""),
                d["url"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        list.iter()
            .all(|d| d["type"].as_str() == Some("prometheus")),
        "every data source is type prometheus"
    );
    assert_eq!(urls.get("prometheus"), Some(&"http://prometheus:9090"));
    assert_eq!(urls.get("depin-orcha"), Some(&"http://depin-orcha:9817"));
    assert_eq!(
        list.iter()
            .filter(|d| d["isDefault"].as_bool() == Some(true))
            .count(),
        1,
        "one default data source"
    );

    // The dashboard provider's path is where compose mounts grafana/dashboards.
    let prov = yaml("grafana/provisioning/dashboards/depin-orcha.yml");
    let path = prov["providers"][0]["options"]["path"]
        .as_str()
        .expect("providers[0].options.path");
    let host =
        host_path_of(grafana, path).unwrap_or_else(|| panic!("grafana does not mount {path}"));
    assert_eq!(
        host,
        root().join("grafana/dashboards"),
        "the provider reads {path}"
    );
    let prov_dir = host_path_of(grafana, "/etc/grafana/provisioning")
        .expect("grafana mounts /etc/grafana/provisioning");
    assert_eq!(prov_dir, root().join("grafana/provisioning"));

    // Prometheus' config inside the container: its rule_files resolve to rules/prometheus/*.yml through
    // the mounts, and promtool accepts it.
    let prom = &services["prometheus"];
    let cmd: Vec<String> = prom["command"]
        .as_sequence()
        .expect("prometheus command: a list")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let cfg = cmd
        .iter()
        .find_map(|c| c.strip_prefix("--config.file="))
        .expect("--config.file");
    let cfg_host =
        host_path_of(prom, cfg).unwrap_or_else(|| panic!("prometheus does not mount {cfg}"));
    let cfg_yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&cfg_host).expect("read prometheus config"))
            .expect("YAML");
    let cfg_dir = Path::new(cfg).parent().expect("config dir");
    for rf in cfg_yaml["rule_files"].as_sequence().expect("rule_files") {
        let rf = rf.as_str().expect("rule file");
        let in_container = normalize(&cfg_dir.join(rf));
        let dir = in_container
            .parent()
            .expect("rules dir")
            .to_str()
            .expect("utf-8");
        let host_dir =
            host_path_of(prom, dir).unwrap_or_else(|| panic!("prometheus does not mount {dir}"));
        assert_eq!(
            host_dir,
            root().join("rules/prometheus"),
            "rule_files {rf} resolves to {}",
            in_container.display()
        );
    }
    if let Some(promtool) = common::promtool() {
        let out = Command::new(promtool)
            .args(["check", "config"])
            .arg(&cfg_host)
            .output()
            .expect("promtool");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "promtool check config {}:\n{text}",
            cfg_host.display()
        );
        assert!(text.contains("2 rule files found"), "{text}");
    }
    let am_cfg = host_path_of(
        &services["alertmanager"],
        "/etc/alertmanager/alertmanager.yml",
    )
    .expect("alertmanager config mounted");
    assert!(am_cfg.exists());
    // depin-orcha listens on all interfaces inside its container (the default is loopback).
    let orcha_cmd = format!("{:?}", services["depin-orcha"]["command"]);
    assert!(
        orcha_cmd.contains("0.0.0.0:9817"),
        "depin-orcha must listen on 0.0.0.0:9817: {orcha_cmd}"
    );
}

/// `a/b/../c` → `a/c` without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

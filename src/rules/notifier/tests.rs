//! Tests of the notifier against a fake Alertmanager: a hyper server on a loopback port 0 that
//! records every request and answers as each test scripts it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::Registry;
use tokio::sync::{watch, Notify};

use super::*;

/// How the fake Alertmanager answers.
#[derive(Clone)]
enum Script {
    /// These statuses in turn, then 200 for ever.
    Statuses(Vec<u16>),
    /// Reads the request, then never answers.
    Hang,
}

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    content_type: String,
    user_agent: String,
    body: String,
    at: std::time::Instant,
}

impl Recorded {
    fn alerts(&self) -> Vec<serde_json::Value> {
        match serde_json::from_str::<serde_json::Value>(&self.body) {
            Ok(serde_json::Value::Array(a)) => a,
            other => panic!("body is not a JSON array: {other:?}: {}", self.body),
        }
    }
}

struct FakeAlertmanager {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAlertmanager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAlertmanager {
    async fn start(script: Script) -> FakeAlertmanager {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let script = Arc::new(Mutex::new(script));
        let (reqs, arr) = (requests.clone(), arrived.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (reqs, arr, script) = (reqs.clone(), arr.clone(), script.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (reqs, arr, script) = (reqs.clone(), arr.clone(), script.clone());
                        async move {
                            let header = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string()
                            };
                            let mut rec = Recorded {
                                method: req.method().to_string(),
                                path: req.uri().path().to_string(),
                                content_type: header("content-type"),
                                user_agent: header("user-agent"),
                                body: String::new(),
                                at: std::time::Instant::now(),
                            };
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            rec.body = String::from_utf8(body.to_vec()).unwrap();
                            let status = {
                                let mut s = script.lock().unwrap();
                                match &mut *s {
                                    Script::Hang => None,
                                    Script::Statuses(v) if v.is_empty() => Some(200),
                                    Script::Statuses(v) => Some(v.remove(0)),
                                }
                            };
                            reqs.lock().unwrap().push(rec);
                            arr.notify_waiters();
                            let Some(status) = status else {
                                std::future::pending::<()>().await;
                                unreachable!()
                            };
                            let mut resp =
                                Response::new(Full::new(Bytes::from(if status == 200 {
                                    ""
                                } else {
                                    "scripted failure"
                                })));
                            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeAlertmanager {
            addr,
            requests,
            arrived,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (fails the test after 10s).
    async fn wait_requests(&self, n: usize) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrived.notified();
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {n} requests, got {}: {got:?}",
                    self.requests().len()
                );
            }
        }
    }
}

fn alert(name: &str, i: usize) -> Alert {
    Alert {
        labels: Labels::from_pairs([("alertname", name.to_string()), ("i", i.to_string())]),
        annotations: Labels::empty(),
        starts_at: 1_700_000_000_000,
        ends_at: 1_700_000_240_000,
        generator_url: String::new(),
    }
}

fn opts(urls: Vec<String>) -> NotifierOptions {
    NotifierOptions {
        alertmanager_urls: urls,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(10),
        },
        ..Default::default()
    }
}

/// A started notifier: its registry, and the switch that stops its task.
struct Running {
    notifier: Notifier,
    registry: Registry,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    fn new(o: NotifierOptions) -> Running {
        let registry = Registry::new();
        let notifier = Notifier::new(o, &registry).unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(notifier.clone().run(rx));
        Running {
            notifier,
            registry,
            stop,
            task: Some(task),
        }
    }

    /// One sample's value from the registry, `labels` as `alertmanager` value or none.
    fn metric(&self, name: &str, alertmanager: Option<&str>) -> f64 {
        metric(&self.registry, name, alertmanager)
    }

    async fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("run returns after shutdown")
                .unwrap();
        }
    }
}

fn metric(registry: &Registry, name: &str, alertmanager: Option<&str>) -> f64 {
    for mf in registry.gather() {
        if mf.name() != name {
            continue;
        }
        for m in mf.get_metric() {
            let am = m
                .get_label()
                .iter()
                .find(|l| l.name() == "alertmanager")
                .map(|l| l.value().to_string());
            if am.as_deref() != alertmanager {
                continue;
            }
            if m.get_counter().has_value() {
                return m.get_counter().value();
            }
            if m.get_gauge().has_value() {
                return m.get_gauge().value();
            }
            return m.get_histogram().get_sample_count() as f64;
        }
    }
    panic!("no sample {name}{{alertmanager={alertmanager:?}}}");
}

#[tokio::test]
async fn posts_prometheus_json_to_every_alertmanager_with_external_labels() {
    let am1 = FakeAlertmanager::start(Script::Statuses(vec![])).await;
    let am2 = FakeAlertmanager::start(Script::Statuses(vec![])).await;
    let mut o = opts(vec![am1.url(), format!("{}/proxy/am/", am2.url())]);
    o.external_labels = Labels::from_pairs([("site", "home"), ("alertname", "external-loses")]);
    let mut r = Running::new(o);
    r.notifier.send(vec![
        Alert {
            labels: Labels::from_pairs([("alertname", "NodeDown"), ("node", "storj-1")]),
            annotations: Labels::from_pairs([("summary", "storj-1 is \"down\"")]),
            starts_at: 1_700_000_000_123,
            ends_at: 1_700_000_240_000,
            generator_url: "http://127.0.0.1:9817/graph?g0.expr=up+%3D%3D+0".into(),
        },
        Alert {
            labels: Labels::from_pairs([("alertname", "Quiet")]),
            annotations: Labels::empty(),
            starts_at: 0,
            ends_at: 1_700_000_240_000,
            generator_url: String::new(),
        },
    ]);
    let expected = concat!(
        r#"[{"annotations":{"summary":"storj-1 is \"down\""},"endsAt":"2023-11-14T22:17:20.000Z","#,
        r#""startsAt":"2023-11-14T22:13:20.123Z","generatorURL":"http://127.0.0.1:9817/graph?g0.expr=up+%3D%3D+0","#,
        r#""labels":{"alertname":"NodeDown","node":"storj-1","site":"home"}},"#,
        r#"{"endsAt":"2023-11-14T22:17:20.000Z","startsAt":"1970-01-01T00:00:00.000Z","labels":{"alertname":"Quiet","site":"home"}}]"#
    );
    for (am, path) in [(&am1, "/api/v2/alerts"), (&am2, "/proxy/am/api/v2/alerts")] {
        let got = am.wait_requests(1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].method, "POST");
        assert_eq!(got[0].path, path);
        assert_eq!(got[0].content_type, "application/json");
        assert!(
            got[0].user_agent.starts_with("depin-orcha/"),
            "{:?}",
            got[0]
        );
        assert_eq!(got[0].body, expected);
        let label = format!("http://{}{path}", am.addr);
        // The request is answered before the counter moves; give the task a moment.
        let mut sent = 0.0;
        for _ in 0..100 {
            sent = r.metric("depin_notifications_sent_total", Some(&label));
            if sent == 2.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sent, 2.0, "{label}");
        assert_eq!(
            r.metric("depin_notifications_errors_total", Some(&label)),
            0.0
        );
    }
    assert_eq!(
        r.metric("depin_notifications_alertmanagers_discovered", None),
        2.0
    );
    assert_eq!(
        r.metric("depin_notifications_queue_capacity", None),
        10_000.0
    );
    assert_eq!(r.metric("depin_notifications_dropped_total", None), 0.0);
    r.shutdown().await;
}

#[tokio::test]
async fn sends_in_batches_of_at_most_64_in_queue_order() {
    let am = FakeAlertmanager::start(Script::Statuses(vec![])).await;
    let registry = Registry::new();
    let notifier = Notifier::new(opts(vec![am.url()]), &registry).unwrap();
    // Queued before the task starts, so the split does not depend on timing.
    notifier.send((0..150).map(|i| alert("Many", i)).collect());
    assert_eq!(
        metric(&registry, "depin_notifications_queue_length", None),
        150.0
    );
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(notifier.clone().run(rx));
    let got = am.wait_requests(3).await;
    let sizes: Vec<usize> = got.iter().map(|r| r.alerts().len()).collect();
    assert_eq!(sizes, vec![64, 64, 22]);
    let order: Vec<String> = got
        .iter()
        .flat_map(|r| r.alerts())
        .map(|a| a["labels"]["i"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    assert_eq!(order, want);
    assert_eq!(
        metric(&registry, "depin_notifications_queue_length", None),
        0.0
    );
    let _ = stop.send(true);
    task.await.unwrap();
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_alerts_and_counts_them() {
    let am = FakeAlertmanager::start(Script::Statuses(vec![])).await;
    let registry = Registry::new();
    let mut o = opts(vec![am.url()]);
    o.queue_capacity = 10;
    let notifier = Notifier::new(o, &registry).unwrap();
    notifier.send((0..6).map(|i| alert("Q", i)).collect());
    notifier.send((6..12).map(|i| alert("Q", i)).collect());
    // One send larger than the whole queue keeps its newest alerts.
    notifier.send((12..25).map(|i| alert("Q", i)).collect());
    assert_eq!(notifier.queue_len(), 10);
    assert_eq!(
        metric(&registry, "depin_notifications_dropped_total", None),
        15.0
    );
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(notifier.clone().run(rx));
    let got = am.wait_requests(1).await;
    let ids: Vec<String> = got[0]
        .alerts()
        .iter()
        .map(|a| a["labels"]["i"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (15..25).map(|i| i.to_string()).collect();
    assert_eq!(ids, want);
    let _ = stop.send(true);
    task.await.unwrap();
}

#[tokio::test]
async fn retries_a_500_with_growing_backoff_then_succeeds() {
    let am = FakeAlertmanager::start(Script::Statuses(vec![500, 503])).await;
    let mut r = Running::new(opts(vec![am.url()]));
    let label = format!("{}/api/v2/alerts", am.url());
    r.notifier.send(vec![alert("Flaky", 1), alert("Flaky", 2)]);
    let got = am.wait_requests(3).await;
    assert!(
        got.iter().all(|g| g.body == got[0].body),
        "same batch resent"
    );
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(gap1 >= Duration::from_millis(50), "first backoff {gap1:?}");
    assert!(
        gap2 >= Duration::from_millis(100),
        "second backoff doubles: {gap2:?}"
    );
    r.shutdown().await;
    assert_eq!(am.requests().len(), 3, "no request after success");
    assert_eq!(
        r.metric("depin_notifications_sent_total", Some(&label)),
        2.0
    );
    assert_eq!(
        r.metric("depin_notifications_errors_total", Some(&label)),
        4.0
    );
    assert_eq!(r.metric("depin_notifications_dropped_total", None), 0.0);
    assert_eq!(
        r.metric("depin_notifications_latency_seconds", Some(&label)),
        3.0
    );
}

#[tokio::test]
async fn gives_up_after_max_attempts_counts_the_batch_dropped_and_goes_on() {
    let am = FakeAlertmanager::start(Script::Statuses(vec![503; 3])).await;
    let mut r = Running::new(opts(vec![am.url()]));
    r.notifier.send(vec![alert("Lost", 1)]);
    am.wait_requests(3).await;
    // The next batch is sent: one dead batch does not stop the notifier.
    r.notifier.send(vec![alert("Next", 1)]);
    let got = am.wait_requests(4).await;
    assert_eq!(got[3].alerts()[0]["labels"]["alertname"], "Next");
    r.shutdown().await;
    assert_eq!(am.requests().len(), 4);
    assert_eq!(r.metric("depin_notifications_dropped_total", None), 1.0);
}

#[tokio::test]
async fn after_failing_all_attempts_an_alertmanager_gets_one_attempt_until_it_recovers() {
    // batch 1: 3 × 503 (gives up, marked down); batch 2: one 503, no retry; batch 3: 200
    // (up again); batch 4: 503 then 200, retried again.
    let am = FakeAlertmanager::start(Script::Statuses(vec![503, 503, 503, 503, 200, 503])).await;
    let mut r = Running::new(opts(vec![am.url()]));
    let mut expected_requests = 0;
    for (batch, attempts) in [(1, 3), (2, 1), (3, 1), (4, 2)] {
        r.notifier.send(vec![alert("Batch", batch)]);
        expected_requests += attempts;
        let got = am.wait_requests(expected_requests).await;
        assert_eq!(got.len(), expected_requests, "batch {batch}");
        // Let the batch finish before the next: the notifier handles one at a time anyway.
        for _ in 0..100 {
            let done = r.notifier.queue_len() == 0
                && r.metric(
                    "depin_notifications_latency_seconds",
                    Some(&format!("{}/api/v2/alerts", am.url())),
                ) == expected_requests as f64;
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    r.shutdown().await;
    assert_eq!(am.requests().len(), 7);
    assert_eq!(r.metric("depin_notifications_dropped_total", None), 2.0);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let am = FakeAlertmanager::start(Script::Statuses(vec![400])).await;
    let mut r = Running::new(opts(vec![am.url()]));
    r.notifier.send(vec![alert("Invalid", 1)]);
    am.wait_requests(1).await;
    r.notifier.send(vec![alert("Valid", 1)]);
    let got = am.wait_requests(2).await;
    assert_eq!(got[1].alerts()[0]["labels"]["alertname"], "Valid");
    r.shutdown().await;
    assert_eq!(am.requests().len(), 2);
    assert_eq!(r.metric("depin_notifications_dropped_total", None), 1.0);
}

/// A loopback port nothing listens on (bound, then released).
fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

#[tokio::test]
async fn retries_a_refused_connection_and_counts_the_batch_dropped() {
    let url = refused_url();
    let label = format!("{url}/api/v2/alerts");
    let mut r = Running::new(opts(vec![url]));
    let started = std::time::Instant::now();
    r.notifier
        .send(vec![alert("Nobody", 1), alert("Nobody", 2)]);
    let mut errors = 0.0;
    for _ in 0..500 {
        errors = r.metric("depin_notifications_errors_total", Some(&label));
        if r.metric("depin_notifications_dropped_total", None) == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r.metric("depin_notifications_dropped_total", None), 2.0);
    assert_eq!(errors, 6.0, "3 attempts of 2 alerts");
    assert_eq!(
        r.metric("depin_notifications_latency_seconds", Some(&label)),
        3.0
    );
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "waited 50ms + 100ms between attempts"
    );
    assert_eq!(
        r.metric("depin_notifications_sent_total", Some(&label)),
        0.0
    );
    r.shutdown().await;
}

#[tokio::test]
async fn one_dead_alertmanager_does_not_drop_what_another_accepted() {
    let am = FakeAlertmanager::start(Script::Statuses(vec![])).await;
    let mut r = Running::new(opts(vec![refused_url(), am.url()]));
    r.notifier.send(vec![alert("Half", 1)]);
    am.wait_requests(1).await;
    r.shutdown().await;
    assert_eq!(r.metric("depin_notifications_dropped_total", None), 0.0);
}

#[tokio::test(flavor = "current_thread")]
async fn send_returns_at_once_while_the_alertmanager_hangs() {
    // One thread: if `send` waited for the sending task, this test could never finish.
    let am = FakeAlertmanager::start(Script::Hang).await;
    let mut o = opts(vec![am.url()]);
    o.queue_capacity = 1_000;
    o.timeout = Duration::from_secs(60);
    let mut r = Running::new(o);
    r.notifier.send(vec![alert("Stuck", 0)]);
    am.wait_requests(1).await; // the task now waits on an answer that never comes
    let started = std::time::Instant::now();
    let total = 20_000;
    for i in 0..total / 100 {
        r.notifier
            .send((0..100).map(|j| alert("Stuck", 1 + i * 100 + j)).collect());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "200 sends took {took:?}");
    assert_eq!(r.notifier.queue_len(), 1_000);
    assert_eq!(r.metric("depin_notifications_queue_length", None), 1_000.0);
    assert_eq!(
        r.metric("depin_notifications_dropped_total", None),
        (total - 1_000) as f64
    );
    r.stop.send(true).unwrap();
    if let Some(t) = r.task.take() {
        t.abort();
    }
}

#[tokio::test]
async fn shutdown_drains_the_queue() {
    let am = FakeAlertmanager::start(Script::Statuses(vec![])).await;
    let registry = Registry::new();
    let notifier = Notifier::new(opts(vec![am.url()]), &registry).unwrap();
    notifier.send((0..100).map(|i| alert("Drain", i)).collect());
    let (stop, rx) = watch::channel(true); // stopped before it starts: only the drain runs
    drop(stop);
    notifier.clone().run(rx).await;
    let got = am.requests();
    assert_eq!(got.iter().map(|r| r.alerts().len()).sum::<usize>(), 100);
    assert_eq!(notifier.queue_len(), 0);
}

#[tokio::test]
async fn shutdown_gives_up_after_the_drain_timeout_and_counts_the_rest() {
    let am = FakeAlertmanager::start(Script::Hang).await;
    let registry = Registry::new();
    let mut o = opts(vec![am.url()]);
    o.drain_timeout = Duration::from_millis(300);
    let notifier = Notifier::new(o, &registry).unwrap();
    notifier.send((0..100).map(|i| alert("Late", i)).collect());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(notifier.clone().run(rx));
    am.wait_requests(1).await; // first batch in flight, never answered
    stop.send(true).unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run returns within the drain timeout")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        metric(&registry, "depin_notifications_dropped_total", None),
        100.0
    );
    assert_eq!(notifier.queue_len(), 0);
}

#[test]
fn alertmanager_urls() {
    let ok = |s: &str| alerts_url(s).map(|a| a.label);
    assert_eq!(
        ok("http://127.0.0.1:9093").unwrap(),
        "http://127.0.0.1:9093/api/v2/alerts"
    );
    assert_eq!(
        ok("http://am.local/prefix/").unwrap(),
        "http://am.local:80/prefix/api/v2/alerts"
    );
    assert_eq!(
        ok("http://[::1]:9093/a/b").unwrap(),
        "http://[::1]:9093/a/b/api/v2/alerts"
    );
    assert_eq!(
        ok("https://am.example:9093").unwrap(),
        "https://am.example:9093/api/v2/alerts"
    );
    for (bad, why) in [
        ("ftp://am", "not http or https"),
        ("http://user:pw@am:9093", "credentials"),
        ("http://am:9093/?x=1", "query"),
        ("127.0.0.1:9093", "127.0.0.1:9093"),
    ] {
        let e = alerts_url(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
        assert!(e.contains("--alertmanager.url"), "{e}");
    }
    let r = Registry::new();
    let dup = Notifier::new(opts(vec!["http://a:1".into(), "http://a:1/".into()]), &r).unwrap_err();
    assert!(dup.to_string().contains("twice"), "{dup}");
}

#[test]
fn metrics_are_registered_and_initialised() {
    let r = Registry::new();
    let _n = Notifier::new(opts(vec!["http://127.0.0.1:9093".into()]), &r).unwrap();
    let mut names: Vec<String> = r.gather().iter().map(|m| m.name().to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "depin_notifications_alertmanagers_discovered",
            "depin_notifications_dropped_total",
            "depin_notifications_errors_total",
            "depin_notifications_queue_capacity",
            "depin_notifications_queue_length",
            "depin_notifications_sent_total",
        ]
    );
    let label = Some("http://127.0.0.1:9093/api/v2/alerts");
    assert_eq!(metric(&r, "depin_notifications_sent_total", label), 0.0);
    assert_eq!(metric(&r, "depin_notifications_errors_total", label), 0.0);
    // A second notifier on the same registry is refused, not silently unmeasured.
    let again = Notifier::new(opts(vec![]), &r).unwrap_err();
    assert!(
        again.to_string().contains("depin_notifications_sent_total"),
        "{again}"
    );
}

#[test]
fn times_are_rfc3339_with_milliseconds_in_utc() {
    assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        rfc3339_millis(1_700_000_000_123),
        "2023-11-14T22:13:20.123Z"
    );
    assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
}

#[test]
fn without_alertmanagers_send_discards() {
    let r = Registry::new();
    let n = Notifier::new(opts(vec![]), &r).unwrap();
    n.send(vec![alert("Nowhere", 1)]);
    assert_eq!(n.queue_len(), 0);
}

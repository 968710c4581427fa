//! The poll loop: one task per node on the node's own interval, each poll cut by its own
//! timeout, so a node that hangs or fails never delays the others, with exponential backoff
//! for a failing one; each poll's result goes through the node's [`NodePipeline`] (series,
//! earnings, health); and a scrape task writes the registry into the tsdb every
//! `scrape_interval`.
//!
//! - `pipeline`: what becomes of one poll's result (shared with `simulate`).
//! - `health`: each node's health and the readiness signal.
//!
//! Cadence runs on tokio's timer (paused in tests); timestamps (last success, tsdb samples)
//! come from the [`Clock`](crate::clock::Clock). It never evaluates rules or moves resources.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub mod health;
pub mod pipeline;

pub use health::{HealthBoard, LastError, NodeHealth};
pub use pipeline::{earned_delta, NodePipeline, PollContext, JITTER_TOLERANCE};

use crate::adapters::prices::PriceTable;
use crate::adapters::{Adapter, PollError};
use crate::clock::{Clock, SharedClock};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::resources::Allocation;
use crate::tsdb::Db;

/// The longest wait between polls of a failing node (or its interval, when longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("node {node}: {reason}")]
    Build { node: String, reason: String },
    #[error("duplicate node name {0}")]
    DuplicateNode(String),
}

/// One node as the coordinator drives it.
#[derive(Clone)]
pub struct PolledNode {
    pub adapter: Arc<dyn Adapter>,
    pub interval: Duration,
    pub timeout: Duration,
    /// The config's extra labels of this node.
    pub labels: BTreeMap<String, String>,
    /// The configured allocation, shown when the node does not report its own.
    pub allocation: Option<Allocation>,
}

/// The poll loop of all nodes plus the scrape into the tsdb.
pub struct Coordinator {
    nodes: Vec<PolledNode>,
    metrics: Arc<Metrics>,
    db: Arc<Db>,
    clock: SharedClock,
    scrape_interval: Duration,
    prices: Arc<PriceTable>,
    health: Arc<HealthBoard>,
    /// Turns true once the first scrape was written to the tsdb (what `/-/ready` waits for).
    scraped: watch::Sender<bool>,
    /// `prices.http`, refreshed while the coordinator runs.
    price_source: Option<(
        crate::adapters::prices::HttpPriceSpec,
        BTreeMap<String, f64>,
    )>,
}

impl Coordinator {
    /// Builds the adapters of the configured nodes.
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        db: Arc<Db>,
        clock: SharedClock,
    ) -> Result<Coordinator, CoordinatorError> {
        let nodes = config
            .nodes
            .iter()
            .map(|n| PolledNode {
                adapter: n.build(clock.clone()),
                interval: n.poll_interval,
                timeout: n.poll_timeout,
                labels: n.labels.clone(),
                allocation: n.allocation(),
            })
            .collect();
        let prices = Arc::new(PriceTable::new(config.prices.clone()));
        let mut c = Coordinator::with_nodes(
            nodes,
            config.global.scrape_interval,
            prices,
            metrics,
            db,
            clock,
        )?;
        c.price_source = config
            .price_source
            .clone()
            .map(|s| (s, config.prices.clone()));
        Ok(c)
    }

    /// Drives the given nodes (tests, and callers that build adapters themselves).
    pub fn with_nodes(
        nodes: Vec<PolledNode>,
        scrape_interval: Duration,
        prices: Arc<PriceTable>,
        metrics: Arc<Metrics>,
        db: Arc<Db>,
        clock: SharedClock,
    ) -> Result<Coordinator, CoordinatorError> {
        let mut seen = HashSet::new();
        for n in &nodes {
            if !seen.insert(n.adapter.name().to_string()) {
                return Err(CoordinatorError::DuplicateNode(
                    n.adapter.name().to_string(),
                ));
            }
        }
        let health = Arc::new(HealthBoard::new(
            nodes
                .iter()
                .map(|n| (n.adapter.name(), n.adapter.protocol())),
        ));
        Ok(Coordinator {
            nodes,
            metrics,
            db,
            clock,
            scrape_interval,
            prices,
            health,
            scraped: watch::channel(false).0,
            price_source: None,
        })
    }

    /// Turns true once every node has been polled (or a scrape interval has passed) and that
    /// first scrape is in the tsdb: from then on queries see data.
    pub fn scraped(&self) -> watch::Receiver<bool> {
        self.scraped.subscribe()
    }

    /// Health per node and readiness; stays valid after `run` consumed the coordinator.
    pub fn health(&self) -> Arc<HealthBoard> {
        self.health.clone()
    }

    /// The price table the USD counters read; a price source may update it.
    pub fn prices(&self) -> Arc<PriceTable> {
        self.prices.clone()
    }

    /// The adapters, e.g. to reach their [`adapters::Allocatable`] side.
    pub fn adapters(&self) -> Vec<Arc<dyn Adapter>> {
        self.nodes.iter().map(|n| n.adapter.clone()).collect()
    }

    /// Polls until `shutdown` turns true (or its sender is dropped).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        for node in self.nodes {
            let labels =
                self.metrics
                    .labels_for(node.adapter.name(), node.adapter.protocol(), &node.labels);
            let pipeline = NodePipeline::new(labels, node.allocation);
            let worker = NodeWorker {
                node,
                pipeline,
                metrics: self.metrics.clone(),
                clock: self.clock.clone(),
                prices: self.prices.clone(),
                health: self.health.clone(),
            };
            tasks.spawn(worker.run(shutdown.clone()));
        }
        if let Some((spec, static_prices)) = self.price_source {
            let source = crate::adapters::prices::HttpPriceSource {
                spec,
                static_prices,
                table: self.prices.clone(),
                gauges: self.metrics.clone(),
                clock: self.clock.clone(),
            };
            tasks.spawn(source.run(shutdown.clone()));
        }
        tasks.spawn(scrape_loop(
            ScrapeParts {
                metrics: self.metrics,
                db: self.db,
                clock: self.clock,
                prices: self.prices,
                health: self.health,
                scraped: self.scraped,
            },
            self.scrape_interval,
            shutdown,
        ));
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "a coordinator task ended abnormally");
            }
        }
    }
}

/// Resolves when shutdown is asked for (true, or the sender gone).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// What the scrape task writes from and to.
struct ScrapeParts {
    metrics: Arc<Metrics>,
    db: Arc<Db>,
    clock: SharedClock,
    prices: Arc<PriceTable>,
    health: Arc<HealthBoard>,
    scraped: watch::Sender<bool>,
}

async fn scrape_loop(parts: ScrapeParts, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let ScrapeParts {
        metrics,
        db,
        clock,
        prices,
        health,
        scraped,
    } = parts;
    // The first scrape comes as soon as every node has answered once (at the start none has),
    // or one interval in when a node is slow; then every interval.
    tokio::select! {
        _ = health.wait_ready() => {}
        _ = tokio::time::sleep(every) => {}
        _ = shutdown_requested(&mut shutdown) => return,
    }
    let mut tick = tokio::time::interval_at(Instant::now(), every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown_requested(&mut shutdown) => return,
        }
        for (token, usd) in prices.snapshot() {
            metrics.set_token_price(&token, usd);
        }
        match db.ingest_scrape(clock.now_ms(), &metrics.gather()) {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("writing samples to the tsdb works again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::error!(error = %e, "cannot write samples to the tsdb");
            }
            Err(_) => {}
        }
        // After the first attempt, failed or not: a storage that cannot be written must not
        // keep the API unready for ever (the error above says what is wrong).
        scraped.send_if_modified(|s| !std::mem::replace(s, true));
    }
}

/// The wait after a poll that ended `failures` failures in a row: the interval, doubled per
/// further failure, capped at [`MAX_BACKOFF`] (or the interval when that is longer).
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    if failures <= 1 {
        return interval;
    }
    let cap = MAX_BACKOFF.max(interval);
    let factor = 2u32.saturating_pow(failures - 1);
    interval.saturating_mul(factor).min(cap)
}

/// The tokio task of one node: its cadence, timeout and backoff around its [`NodePipeline`].
struct NodeWorker {
    node: PolledNode,
    pipeline: NodePipeline,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    prices: Arc<PriceTable>,
    health: Arc<HealthBoard>,
}

impl NodeWorker {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        self.pipeline.start(&self.metrics);
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown_requested(&mut shutdown) => return,
            }
            let started = Instant::now();
            let poll = tokio::time::timeout(self.node.timeout, self.node.adapter.poll());
            let result = tokio::select! {
                r = poll => r.unwrap_or(Err(PollError::Timeout(self.node.timeout))),
                _ = shutdown_requested(&mut shutdown) => return,
            };
            let ctx = PollContext {
                metrics: &self.metrics,
                prices: &self.prices,
                health: &self.health,
            };
            let ok = result.is_ok();
            let seconds = started.elapsed().as_secs_f64();
            self.pipeline
                .record(&ctx, self.clock.now_ms(), seconds, result);
            let wait = if ok {
                self.node.interval
            } else {
                backoff(self.node.interval, self.pipeline.failures())
            };
            // Anchored at the poll's start, so a slow answer does not shift the cadence.
            next = started + wait;
        }
    }
}

/// A clock that follows tokio's timer from a given start: with paused time (tests, and a
/// `simulate` driven by tokio's virtual time) the timestamps move exactly as far as the timers.
pub struct TokioClock {
    start_ms: i64,
    start: Instant,
}

impl TokioClock {
    pub fn new(start_ms: i64) -> TokioClock {
        TokioClock {
            start_ms,
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        self.start_ms + self.start.elapsed().as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::{Observation, PollFuture};
    use crate::labels::Matcher;
    use crate::metrics::NodeLabels;
    use crate::resources::Resources;
    use crate::tsdb::Queryable;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    /// An adapter that answers from a script (the last entry repeats) and records when it was
    /// polled. `Err(None)` hangs.
    struct Scripted {
        name: String,
        script: Mutex<VecDeque<Result<Observation, Option<&'static str>>>>,
        polled_at: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn new(
            name: &str,
            script: Vec<Result<Observation, Option<&'static str>>>,
        ) -> Arc<Scripted> {
            Arc::new(Scripted {
                name: name.into(),
                script: Mutex::new(script.into()),
                polled_at: Mutex::new(Vec::new()),
            })
        }

        fn earning(token: &str, v: f64) -> Result<Observation, Option<&'static str>> {
            let mut o = Observation::default();
            o.earnings.insert(token.into(), v);
            o.usage = Resources {
                cpu_cores: Some(1.0),
                ..Default::default()
            };
            Ok(o)
        }

        fn gaps(&self) -> Vec<Duration> {
            let p = self.polled_at.lock().unwrap();
            p.windows(2).map(|w| w[1] - w[0]).collect()
        }
    }

    impl Adapter for Scripted {
        fn name(&self) -> &str {
            &self.name
        }
        fn protocol(&self) -> &str {
            "test"
        }
        fn poll(&self) -> PollFuture<'_> {
            self.polled_at.lock().unwrap().push(Instant::now());
            let mut s = self.script.lock().unwrap();
            let next = if s.len() > 1 {
                s.pop_front()
            } else {
                s.front().cloned()
            };
            match next {
                None | Some(Err(None)) => Box::pin(std::future::pending()),
                Some(Err(Some("parse"))) => {
                    Box::pin(std::future::ready(Err(PollError::Parse("garbage".into()))))
                }
                Some(Err(Some(_))) => {
                    Box::pin(std::future::ready(Err(PollError::Refused("test".into()))))
                }
                Some(Ok(o)) => Box::pin(std::future::ready(Ok(o))),
            }
        }
    }

    fn polled(a: Arc<Scripted>) -> PolledNode {
        PolledNode {
            adapter: a,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(4),
            labels: BTreeMap::new(),
            allocation: None,
        }
    }

    struct Harness {
        metrics: Arc<Metrics>,
        db: Arc<Db>,
        health: Arc<HealthBoard>,
        prices: Arc<PriceTable>,
        shutdown: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(nodes: Vec<PolledNode>, prices: &[(&str, f64)]) -> Harness {
        let metrics = Arc::new(Metrics::new(&[]).unwrap());
        let db = Arc::new(Db::in_memory());
        let clock: SharedClock = Arc::new(TokioClock::new(T0));
        let prices = Arc::new(PriceTable::new(
            prices.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        ));
        let c = Coordinator::with_nodes(
            nodes,
            Duration::from_secs(5),
            prices.clone(),
            metrics.clone(),
            db.clone(),
            clock,
        )
        .unwrap();
        let health = c.health();
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(c.run(rx));
        Harness {
            metrics,
            db,
            health,
            prices,
            shutdown,
            task,
        }
    }

    impl Harness {
        fn labels(&self, name: &str) -> NodeLabels {
            self.metrics.labels_for(name, "test", &BTreeMap::new())
        }
        async fn stop(self) {
            self.shutdown.send_replace(true);
            self.task.await.unwrap();
        }
    }

    /// Sleeps until `secs` after the harness started (polls happen at whole multiples of 5 s;
    /// sample between them).
    async fn at(start: Instant, secs: f64) {
        tokio::time::sleep_until(start + Duration::from_secs_f64(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_node_does_not_delay_the_others() {
        let t0 = Instant::now();
        let hang = Scripted::new("hang", vec![Err(None)]);
        let b = Scripted::new("b", vec![Scripted::earning("X", 1.0)]);
        let c = Scripted::new("c", vec![Scripted::earning("X", 1.0)]);
        let h = start(
            vec![polled(hang.clone()), polled(b.clone()), polled(c.clone())],
            &[],
        );
        at(t0, 1.0).await;
        assert!(
            !h.health.ready(),
            "the hanging node has not finished its first poll"
        );
        at(t0, 61.0).await;
        assert!(h.health.ready(), "a timed-out poll counts as polled");
        for n in [&b, &c] {
            let gaps = n.gaps();
            assert_eq!(gaps.len(), 12, "{gaps:?}");
            assert!(
                gaps.iter().all(|g| *g == Duration::from_secs(5)),
                "{gaps:?}"
            );
        }
        // The hanging node: cut at 4 s each time, then backed off 5, 10, 20, 40 s.
        let gaps = hang.gaps();
        assert_eq!(gaps, [5, 10, 20].map(Duration::from_secs), "{gaps:?}");
        let l = h.labels("hang");
        assert_eq!(h.metrics.poll_errors(&l, "timeout"), 4.0);
        assert_eq!(h.metrics.node_gauge("depin_adapter_up", &l), Some(0.0));
        assert_eq!(
            h.metrics
                .node_gauge("depin_adapter_consecutive_failures", &l),
            Some(4.0)
        );
        assert_eq!(
            h.metrics.node_gauge("depin_adapter_up", &h.labels("b")),
            Some(1.0)
        );
        let hh = h.health.get("hang").unwrap();
        assert!(!hh.up && hh.polled && hh.last_error.as_ref().unwrap().reason == "timeout");
        h.stop().await;
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let s = Duration::from_secs;
        let got: Vec<Duration> = (1..=7).map(|f| backoff(s(5), f)).collect();
        assert_eq!(got, [s(5), s(10), s(20), s(40), s(60), s(60), s(60)]);
        // A node polled less often than the cap keeps its own interval.
        assert_eq!(backoff(s(120), 5), s(120));
    }

    #[tokio::test(start_paused = true)]
    async fn garbage_is_down_with_reason_parse_and_recovers() {
        let t0 = Instant::now();
        let g = Scripted::new(
            "g",
            vec![
                Err(Some("parse")),
                Err(Some("parse")),
                Scripted::earning("X", 2.0),
            ],
        );
        let ok = Scripted::new("ok", vec![Scripted::earning("X", 1.0)]);
        let h = start(vec![polled(g.clone()), polled(ok)], &[]);
        at(t0, 1.0).await;
        let l = h.labels("g");
        assert_eq!(h.metrics.node_gauge("depin_adapter_up", &l), Some(0.0));
        assert_eq!(h.metrics.poll_errors(&l, "parse"), 1.0);
        assert_eq!(h.metrics.poll_errors(&l, "timeout"), 0.0);
        assert_eq!(
            h.metrics.node_gauge("depin_adapter_up", &h.labels("ok")),
            Some(1.0)
        );
        assert!(h.health.ready());
        // Second failure at 5 s, then backoff 10 s: the recovery poll is at 15 s.
        at(t0, 14.0).await;
        assert_eq!(h.metrics.poll_errors(&l, "parse"), 2.0);
        assert_eq!(
            h.metrics.node_gauge("depin_usage_cpu_cores", &l),
            None,
            "no usage while down"
        );
        at(t0, 16.0).await;
        assert_eq!(h.metrics.node_gauge("depin_adapter_up", &l), Some(1.0));
        assert_eq!(h.metrics.node_gauge("depin_usage_cpu_cores", &l), Some(1.0));
        assert_eq!(h.metrics.earnings(&l, "X"), 2.0);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_counter_reset_keeps_earnings_monotonic() {
        let t0 = Instant::now();
        let s = Scripted::new(
            "s",
            vec![
                Scripted::earning("STORJ", 10.0),
                Scripted::earning("STORJ", 15.0),
                // A new month: the node's estimate starts again.
                Scripted::earning("STORJ", 3.0),
                Scripted::earning("STORJ", 5.0),
                // A small correction is not a reset.
                Scripted::earning("STORJ", 4.99),
                Scripted::earning("STORJ", 6.0),
            ],
        );
        let h = start(vec![polled(s)], &[]);
        let l = h.labels("s");
        let mut seen = Vec::new();
        for i in 0..6 {
            at(t0, 1.0 + 5.0 * i as f64).await;
            seen.push(h.metrics.earnings(&l, "STORJ"));
        }
        assert_eq!(seen, [10.0, 15.0, 18.0, 20.0, 20.0, 21.0]);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn usd_uses_the_price_at_that_time() {
        let t0 = Instant::now();
        let s = Scripted::new(
            "s",
            vec![
                Scripted::earning("GLM", 10.0),
                Scripted::earning("GLM", 15.0),
                Scripted::earning("GLM", 16.0),
            ],
        );
        let h = start(vec![polled(s)], &[("GLM", 1.0)]);
        let l = h.labels("s");
        at(t0, 1.0).await;
        assert_eq!(h.metrics.earnings_usd(&l), 10.0);
        h.prices.set("GLM", 2.0);
        at(t0, 6.0).await;
        // The 5 GLM earned since were worth 2 USD each; the first 10 keep their old value.
        assert_eq!(h.metrics.earnings_usd(&l), 20.0);
        h.prices.set("GLM", 0.5);
        at(t0, 11.0).await;
        assert_eq!(h.metrics.earnings_usd(&l), 20.5);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn scrapes_land_in_the_tsdb() {
        let t0 = Instant::now();
        let s = Scripted::new("s", vec![Scripted::earning("GLM", 1.0)]);
        let h = start(vec![polled(s)], &[("GLM", 0.3)]);
        at(t0, 21.0).await;
        let m = [Matcher::equal("__name__", "depin_adapter_up")];
        let series = h.db.select(&m, 0, i64::MAX);
        assert_eq!(series.len(), 1, "{series:?}");
        // The first scrape as soon as the node has answered (at once here), then every 5 s.
        let ts: Vec<i64> = series[0].samples.iter().map(|s| s.t - T0).collect();
        assert_eq!(ts, [0, 5_000, 10_000, 15_000, 20_000]);
        let price = h.db.select(
            &[Matcher::equal("__name__", "depin_token_price_usd")],
            0,
            i64::MAX,
        );
        assert_eq!(price[0].samples[0].v, 0.3);
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn demo_config_runs_four_sim_nodes() {
        let config = crate::config::demo();
        let metrics = Arc::new(Metrics::for_config(&config).unwrap());
        let db = Arc::new(Db::in_memory());
        let clock: SharedClock = Arc::new(TokioClock::new(T0));
        let c = Coordinator::new(&config, metrics.clone(), db, clock).unwrap();
        let health = c.health();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(c.run(rx));
        health.wait_ready().await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        for n in &config.nodes {
            let l = metrics.node_labels(n);
            assert_eq!(
                metrics.node_gauge("depin_adapter_up", &l),
                Some(1.0),
                "{}",
                n.name
            );
            let token = n.kind.tokens()[0].clone();
            assert!(
                metrics.earnings(&l, &token) > 0.0,
                "{} earned nothing in an hour",
                n.name
            );
        }
        let text = metrics.render();
        for want in [
            "depin_sim_demand_ratio{node=\"golem\",protocol=\"golem\"}",
            "depin_storj_audit_score{node=\"storj\",protocol=\"storj\",satellite=\"us1.storj.io\"} 1",
            "depin_golem_activities{node=\"golem\",protocol=\"golem\"}",
            "depin_usage_disk_bytes{node=\"storj\",protocol=\"storj\"}",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        if let Some(report) = crate::metrics::tests::promtool_check(&text) {
            assert!(report.is_empty(), "promtool check metrics:\n{report}");
        }
        tx.send_replace(true);
        task.await.unwrap();
    }

    /// Collects the messages of WARN and INFO events.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<(tracing::Level, String)>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Msg(String);
            impl tracing::field::Visit for Msg {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    if f.name() == "message" {
                        self.0 = format!("{v:?}");
                    }
                }
            }
            let mut m = Msg(String::new());
            event.record(&mut m);
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), m.0));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn state_changes_are_logged_once() {
        use tracing_subscriber::layer::SubscriberExt;
        let captured = Captured::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
        let t0 = Instant::now();
        let ok = || Scripted::earning("X", 1.0);
        let refused = || Err(Some("refused"));
        // Down for three polls, up for two, down again, then up.
        let s = Scripted::new(
            "s",
            vec![refused(), refused(), refused(), ok(), ok(), refused(), ok()],
        );
        let h = start(vec![polled(s)], &[]);
        at(t0, 300.0).await;
        let logs = captured.0.lock().unwrap().clone();
        let down = logs
            .iter()
            .filter(|(l, m)| *l == tracing::Level::WARN && m == "node is down")
            .count();
        let up = logs
            .iter()
            .filter(|(l, m)| *l == tracing::Level::INFO && m == "node is up again")
            .count();
        assert_eq!((down, up), (2, 2), "{logs:?}");
        assert_eq!(h.metrics.poll_errors(&h.labels("s"), "refused"), 4.0);
        h.stop().await;
    }
}

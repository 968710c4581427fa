//! Time to apply a plan with simulated actuators: every step journaled, applied, verified by
//! polling the node, against the bare sequence of `set_allocation` calls for the same steps in
//! the same process. Two journals: in memory (the engine's own cost) and the fsynced history
//! file (what `run` does; dominated by the disk's fsync). The prototype took 50 ms per plan.
//!
//! `cargo bench --bench reallocation_apply`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use depin_orcha::actuators::{sim::SimActuator, Actuator, VerifySpec};
use depin_orcha::adapters::sim::market::{MarketParams, Protocol};
use depin_orcha::adapters::sim::{SimNode, SimSpec};
use depin_orcha::adapters::Allocatable;
use depin_orcha::clock::{ManualClock, SharedClock};
use depin_orcha::reallocation::execute::{execute, steps_for};
use depin_orcha::reallocation::{History, Outcome, Record, Source, Step};
use depin_orcha::resources::Allocation;

const ROUNDS: usize = 400;

fn a(cpu: f64, mem_gb: f64) -> Allocation {
    Allocation {
        cpu_cores: cpu,
        memory_bytes: mem_gb * 1e9,
        disk_bytes: 5e11,
        bandwidth_bytes_per_second: 5e6,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let clock = ManualClock::new(1_767_225_600_000);
    let shared: SharedClock = Arc::new(clock.clone());
    let start: BTreeMap<String, Allocation> = [
        ("golem".to_string(), a(4.0, 8.0)),
        ("storj".to_string(), a(2.0, 4.0)),
        ("streamr".to_string(), a(2.0, 4.0)),
        ("grass".to_string(), a(1.0, 1.0)),
    ]
    .into();
    let target: BTreeMap<String, Allocation> = [
        ("golem".to_string(), a(2.0, 10.0)),
        ("storj".to_string(), a(3.0, 2.0)),
        ("streamr".to_string(), a(3.0, 4.0)),
        ("grass".to_string(), a(1.0, 1.0)),
    ]
    .into();
    let protocols = [
        ("golem", Protocol::Golem),
        ("storj", Protocol::Storj),
        ("streamr", Protocol::Streamr),
        ("grass", Protocol::Grass),
    ];
    let mut nodes: BTreeMap<String, Arc<SimNode>> = BTreeMap::new();
    let mut actuators: BTreeMap<String, Arc<dyn Actuator>> = BTreeMap::new();
    for (name, p) in protocols {
        let spec = SimSpec {
            protocol: p,
            allocation: start[name],
            seed: 1,
            market: MarketParams::defaults(p),
            fault: None,
        };
        let n = Arc::new(SimNode::new(name, &spec, shared.clone()));
        actuators.insert(
            name.to_string(),
            Arc::new(SimActuator::new(n.clone(), VerifySpec::default()).expect("allocatable")),
        );
        nodes.insert(name.to_string(), n);
    }
    let forward = steps_for(&start, &target);
    let back = steps_for(&target, &start);
    let dir = tempfile::tempdir().expect("tempdir");

    // Intent, the steps' records, outcome: what the controller writes for one reallocation.
    let run = |steps: &[Step], history: &Mutex<History>, id: u64| {
        let journal = |r: Record| history.lock().unwrap_or_else(|e| e.into_inner()).append(r);
        journal(Record::Intent {
            id,
            t_ms: 0,
            source: Source::Controller,
            steps: steps.to_vec(),
            expected_gain_usd_per_hour: Some(0.1),
            current_usd_per_hour: Some(1.0),
            hold_ms: 3_600_000,
            summary: String::new(),
        })
        .expect("intent");
        let r = rt.block_on(execute(id, steps, &actuators, &journal, &clock));
        assert_eq!(r.outcome, Outcome::Applied, "{}", r.reason);
        journal(Record::Outcome {
            id,
            t_ms: 0,
            outcome: r.outcome,
            reason: r.reason,
            undo_errors: Vec::new(),
        })
        .expect("outcome");
    };
    let bare = |steps: &[Step]| {
        rt.block_on(async {
            for s in steps {
                nodes[&s.node]
                    .set_allocation(s.to)
                    .await
                    .expect("set_allocation");
            }
        })
    };

    let mut t_bare = Vec::new();
    let mut t_mem = Vec::new();
    let mut t_disk = Vec::new();
    let mem = Mutex::new(History::in_memory());
    let disk = Mutex::new(History::open(dir.path()).expect("history"));
    for i in 0..ROUNDS {
        let steps = if i % 2 == 0 { &forward } else { &back };
        let t = Instant::now();
        bare(steps);
        t_bare.push(t.elapsed());
        bare(if i % 2 == 0 { &back } else { &forward });

        let t = Instant::now();
        run(steps, &mem, i as u64);
        t_mem.push(t.elapsed());
        bare(if i % 2 == 0 { &back } else { &forward });

        let t = Instant::now();
        run(steps, &disk, i as u64);
        t_disk.push(t.elapsed());
        bare(if i % 2 == 0 { &back } else { &forward });
    }
    let (b, m, d) = (median(t_bare), median(t_mem), median(t_disk));
    let ratio = |x: Duration| x.as_secs_f64() / b.as_secs_f64().max(1e-12);
    println!(
        "apply a plan of {} steps on {} sim nodes, median of {ROUNDS}:",
        forward.len(),
        nodes.len()
    );
    println!("  bare set_allocation sequence:             {b:>10.2?}  (baseline)");
    println!(
        "  execute, journal in memory (apply+verify): {m:>10.2?}  {:.1}x baseline",
        ratio(m)
    );
    println!(
        "  execute, fsynced history file:           {d:>10.2?}  {:.1}x baseline; {} fsyncs per plan",
        ratio(d),
        2 * forward.len() + 2
    );
    println!(
        "  prototype: 50 ms per plan -> {:.0}x faster (fsynced) / {:.0}x (in memory)",
        0.05 / d.as_secs_f64(),
        0.05 / m.as_secs_f64()
    );
}

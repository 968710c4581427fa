//! The real actuators against stand-ins for what they drive: a fake Docker Engine answering the
//! Engine API on a unix socket in a tempdir (`_ping`, `GET /containers/{id}/json`,
//! `POST /containers/{id}/update` with the Engine's own checks and JSON), and fake
//! `ya-provider`, `systemctl` and restart commands (shell scripts writing their argv and state
//! into a tempdir). Each kind goes apply → verify → undo; the faults an operator meets (a
//! missing socket, a refused connection, a socket without permission, HTTP 500, a timeout, a
//! command that exits 1) each give an error naming the node and the cause.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use depin_orcha::actuators::docker::{DockerActuator, DockerSpec};
use depin_orcha::actuators::golem_profile::{GolemProfileActuator, GolemProfileSpec};
use depin_orcha::actuators::storj_config::{StorjConfigActuator, StorjConfigSpec};
use depin_orcha::actuators::systemd::{SystemdActuator, SystemdSpec};
use depin_orcha::actuators::{Actuator, ActuatorError, VerifySpec};
use depin_orcha::adapters::{Adapter, Observation, PollFuture};
use depin_orcha::resources::{Allocation, Resources};

const GIB: f64 = 1073741824.0;

fn fast_verify() -> VerifySpec {
    VerifySpec {
        attempts: 3,
        interval: Duration::from_millis(20),
        poll_timeout: Duration::from_secs(2),
        tolerance: 0.01,
    }
}

/// An adapter whose reported allocation is read by a closure (the node's own view).
struct Reports(Box<dyn Fn() -> Resources<Option<f64>> + Send + Sync>);

impl Adapter for Reports {
    fn name(&self) -> &str {
        "node"
    }
    fn protocol(&self) -> &str {
        "test"
    }
    fn poll(&self) -> PollFuture<'_> {
        let o = Observation {
            allocation: (self.0)(),
            ..Default::default()
        };
        Box::pin(std::future::ready(Ok(o)))
    }
}

fn reports_nothing() -> Arc<dyn Adapter> {
    Arc::new(Reports(Box::new(Resources::default)))
}

// ---------------------------------------------------------------------------------------------
// A fake Docker Engine.

#[derive(Clone, Debug, Default)]
struct HostConfig {
    nano_cpus: i64,
    cpu_quota: i64,
    cpu_period: i64,
    memory: i64,
    memory_swap: i64,
}

#[derive(Default)]
struct Engine {
    containers: HashMap<String, HostConfig>,
    /// Answer this many of the next updates with 500 (the Engine's answer to e.g. a cgroup
    /// write error).
    fail_updates: u32,
    /// Delay every inspect by this much.
    slow: Duration,
    /// The JSON bodies of the updates received.
    updates: Vec<Value>,
    /// The paths of every request, as sent (with the API version prefix).
    paths: Vec<String>,
}

type Shared = Arc<Mutex<Engine>>;

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut()
        .insert("api-version", "1.47".parse().unwrap());
    r
}

async fn handle(engine: Shared, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    // bollard prefixes the API version: /v1.47/containers/...
    let path = req.uri().path().to_string();
    let path = match path
        .strip_prefix("/v")
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    {
        Some(rest) => rest
            .find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_default(),
        None => path,
    };
    engine
        .lock()
        .unwrap()
        .paths
        .push(req.uri().path().to_string());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    if path == "/version" {
        // An Engine older than bollard: the client must come down to its API version.
        return reply(
            200,
            json!({"Version": "27.3.1", "ApiVersion": "1.47", "MinAPIVersion": "1.24", "Os": "linux"}),
        );
    }
    if path == "/_ping" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"OK")));
        r.headers_mut()
            .insert("content-type", "text/plain; charset=utf-8".parse().unwrap());
        return r;
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["containers", id, op] = parts[..] else {
        return reply(404, json!({"message": format!("page not found: {path}")}));
    };
    let slow = engine.lock().unwrap().slow;
    if !slow.is_zero() {
        tokio::time::sleep(slow).await;
    }
    let mut e = engine.lock().unwrap();
    let Some(hc) = e.containers.get(id).cloned() else {
        return reply(404, json!({"message": format!("No such container: {id}")}));
    };
    match (method.as_str(), op) {
        ("GET", "json") => reply(
            200,
            json!({
                "Id": format!("{id:0>64}"),
                "Name": format!("/{id}"),
                "State": {"Status": "running", "Running": true},
                "HostConfig": {
                    "NanoCpus": hc.nano_cpus, "CpuQuota": hc.cpu_quota, "CpuPeriod": hc.cpu_period,
                    "Memory": hc.memory, "MemorySwap": hc.memory_swap
                }
            }),
        ),
        ("POST", "update") => {
            let u: Value = serde_json::from_slice(&body).unwrap();
            e.updates.push(u.clone());
            if e.fail_updates > 0 {
                e.fail_updates -= 1;
                return reply(
                    500,
                    json!({"message": "Cannot update container: failed to write to cpu.max: device or resource busy"}),
                );
            }
            let get = |k: &str| u.get(k).and_then(Value::as_i64);
            let mut new = hc.clone();
            if let Some(n) = get("NanoCpus") {
                if hc.cpu_quota > 0 || get("CpuQuota").is_some() {
                    return reply(
                        400,
                        json!({"message": "Conflicting options: Nano CPUs and CPU Period cannot both be set"}),
                    );
                }
                new.nano_cpus = n;
            }
            if let Some(q) = get("CpuQuota") {
                if hc.nano_cpus > 0 {
                    return reply(
                        400,
                        json!({"message": "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"}),
                    );
                }
                new.cpu_quota = q;
            }
            if let Some(p) = get("CpuPeriod") {
                new.cpu_period = p;
            }
            if let Some(m) = get("Memory") {
                new.memory = m;
            }
            if let Some(s) = get("MemorySwap") {
                new.memory_swap = s;
            }
            // The Engine's check: MemorySwap must be >= Memory (or -1, unlimited).
            if new.memory_swap > 0 && new.memory > new.memory_swap {
                return reply(
                    400,
                    json!({"message": "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"}),
                );
            }
            e.containers.insert(id.to_string(), new);
            reply(200, json!({"Warnings": []}))
        }
        _ => reply(404, json!({"message": "page not found"})),
    }
}

/// Serves `engine` on a unix socket at `path` until the test ends.
fn serve(path: &Path, engine: Shared) {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let engine = engine.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let engine = engine.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(engine, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

fn engine_with(id: &str, hc: HostConfig) -> Shared {
    let mut e = Engine::default();
    e.containers.insert(id.to_string(), hc);
    Arc::new(Mutex::new(e))
}

fn docker(socket: &Path, container: &str, adapter: Arc<dyn Adapter>) -> DockerActuator {
    DockerActuator::new(
        DockerSpec {
            container: container.into(),
            socket: socket.into(),
            timeout: Duration::from_millis(500),
        },
        adapter,
        fast_verify(),
    )
}

fn cpu_mem(cpu: f64, mem_gib: f64) -> Allocation {
    Allocation {
        cpu_cores: cpu,
        memory_bytes: mem_gib * GIB,
        ..Allocation::default()
    }
}

#[tokio::test]
async fn docker_apply_verify_undo_through_the_engine_api() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let engine = engine_with(
        "golem",
        HostConfig {
            nano_cpus: 1_000_000_000,
            memory: 2 << 30,
            memory_swap: 4 << 30,
            ..Default::default()
        },
    );
    serve(&sock, engine.clone());
    // The node itself reports the container's limits (as cAdvisor-style adapters would).
    let view = engine.clone();
    let adapter = Arc::new(Reports(Box::new(move || {
        let hc = view.lock().unwrap().containers["golem"].clone();
        Resources {
            cpu_cores: Some(hc.nano_cpus as f64 / 1e9),
            memory_bytes: Some(hc.memory as f64),
            ..Default::default()
        }
    })));
    let a = docker(&sock, "golem", adapter);
    a.check("golem").await.unwrap();
    let before = cpu_mem(1.0, 2.0);
    // 6 GiB is above the container's MemorySwap (4 GiB): the update must raise it too.
    let to = cpu_mem(2.5, 6.0);
    a.apply("golem", &to).await.unwrap();
    a.verify("golem", &to).await.unwrap();
    {
        let e = engine.lock().unwrap();
        let hc = &e.containers["golem"];
        assert_eq!(hc.nano_cpus, 2_500_000_000);
        assert_eq!(hc.memory, 6 << 30);
        assert_eq!(hc.memory_swap, 6 << 30);
        // The version was agreed first; no call asks for an API newer than the Engine's
        // (bollard 0.21 sends unversioned paths, which the Engine serves at its own version).
        assert_eq!(e.paths[0], "/version");
        assert!(
            e.paths[1..]
                .iter()
                .all(|p| p.starts_with("/v1.47/") || !p.starts_with("/v1")),
            "{:?}",
            e.paths
        );
        assert_eq!(
            e.updates[0],
            json!({"NanoCpus": 2_500_000_000i64, "Memory": 6i64 << 30, "MemorySwap": 6i64 << 30})
        );
    }
    // Verification catches a container that is not at the expected limits.
    let e = a.verify("golem", &cpu_mem(3.0, 6.0)).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("container golem has 2.5 CPUs (expected 3)"),
        "{e}"
    );
    a.undo("golem", &before).await.unwrap();
    a.verify("golem", &before).await.unwrap();
    let hc = engine.lock().unwrap().containers["golem"].clone();
    assert_eq!((hc.nano_cpus, hc.memory), (1_000_000_000, 2 << 30));
}

#[tokio::test]
async fn docker_keeps_a_containers_cpu_quota_form() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let engine = engine_with(
        "storj",
        HostConfig {
            cpu_quota: 200_000,
            cpu_period: 100_000,
            ..Default::default()
        },
    );
    serve(&sock, engine.clone());
    let a = docker(&sock, "storj", reports_nothing());
    let to = cpu_mem(1.5, 0.0);
    a.apply("storj", &to).await.unwrap();
    a.verify("storj", &to).await.unwrap();
    let hc = engine.lock().unwrap().containers["storj"].clone();
    assert_eq!((hc.nano_cpus, hc.cpu_quota), (0, 150_000));
}

fn err_text(e: ActuatorError) -> String {
    e.to_string()
}

#[tokio::test]
async fn docker_faults_name_the_node_the_socket_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    // Missing socket.
    let missing = dir.path().join("nope.sock");
    let e = err_text(
        docker(&missing, "golem", reports_nothing())
            .check("golem")
            .await
            .unwrap_err(),
    );
    assert!(
        e.starts_with("node golem: actuator docker is not reachable"),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "Docker socket {} does not exist",
            missing.display()
        )),
        "{e}"
    );

    // A socket file nobody listens on: refused.
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let e = err_text(
        docker(&dead, "golem", reports_nothing())
            .check("golem")
            .await
            .unwrap_err(),
    );
    assert!(e.contains("refused the connection"), "{e}");
    let e = err_text(
        docker(&dead, "golem", reports_nothing())
            .apply("golem", &cpu_mem(1.0, 1.0))
            .await
            .unwrap_err(),
    );
    assert!(
        e.starts_with("node golem: apply failed: Docker Engine at"),
        "{e}"
    );

    // A live Engine: no such container, HTTP 500, and a timeout.
    let sock = dir.path().join("docker.sock");
    let engine = engine_with("golem", HostConfig::default());
    serve(&sock, engine.clone());
    let e = err_text(
        docker(&sock, "gollem", reports_nothing())
            .check("gollem")
            .await
            .unwrap_err(),
    );
    assert!(e.contains("no such container \"gollem\""), "{e}");
    engine.lock().unwrap().fail_updates = u32::MAX;
    let a = docker(&sock, "golem", reports_nothing());
    let e = err_text(a.apply("golem", &cpu_mem(1.0, 1.0)).await.unwrap_err());
    assert!(e.contains("answered 500: Cannot update container"), "{e}");
    engine.lock().unwrap().slow = Duration::from_secs(3);
    let t = std::time::Instant::now();
    let e = a.apply("golem", &cpu_mem(1.0, 1.0)).await.unwrap_err();
    assert!(matches!(e, ActuatorError::Timeout { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// Set in the child run of [`docker_socket_without_permission`]: the locked socket's path.
const LOCKED_SOCKET_VAR: &str = "DEPIN_TEST_LOCKED_DOCKER_SOCKET";

#[tokio::test]
async fn docker_socket_without_permission() {
    let check_locked = |sock: PathBuf| async move {
        let e = err_text(
            docker(&sock, "golem", reports_nothing())
                .check("golem")
                .await
                .unwrap_err(),
        );
        assert!(
            e.contains(&format!(
                "permission denied on Docker socket {}",
                sock.display()
            )),
            "{e}"
        );
    };
    if let Ok(sock) = std::env::var(LOCKED_SOCKET_VAR) {
        // The child: an unprivileged user, for whom the socket's mode applies.
        return check_locked(PathBuf::from(sock)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = dir.path().join("locked.sock");
    serve(&locked, engine_with("golem", HostConfig::default()));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if unsafe { libc::geteuid() } != 0 {
        return check_locked(locked).await;
    }
    // Root ignores file modes (CI runs as root): run this test again as user nobody (65534),
    // which must meet the locked socket.
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["docker_socket_without_permission", "--exact", "--nocapture"])
            .env(LOCKED_SOCKET_VAR, &locked)
            .uid(65534)
            .gid(65534)
            .output()
    })
    .await
    .unwrap();
    match out {
        Ok(o) => assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("1 passed"),
            "the run as nobody failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        // The test binary may sit where nobody cannot reach it; say so rather than pass
        // silently or fail on the machine's layout.
        Err(e) => eprintln!("skipping the permission case: cannot run the test as nobody: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Fake commands.

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A ya-provider with one profile `default`, its state in files beside it.
const YA_PROVIDER: &str = r#"dir="$(dirname "$0")"
echo "$@" >> "$dir/argv.log"
if [ "$1" = "--data-dir" ]; then echo "$2" > "$dir/data_dir"; shift 2; fi
[ "$1" = profile ] || { echo "unknown command $1" >&2; exit 2; }
shift
case "$1" in
  list)
    printf '{\n  "default": {"cpu_threads": %s, "mem_gib": %s, "storage_gib": %s}\n}\n' \
      "$(cat "$dir/cpu")" "$(cat "$dir/mem")" "$(cat "$dir/storage")" ;;
  update)
    shift
    while [ $# -gt 0 ]; do
      case "$1" in
        --name) [ "$2" = default ] || { echo "Error: Profile '$2' does not exist" >&2; exit 1; } ;;
        --cpu-threads) echo "$2" > "$dir/cpu" ;;
        --mem-gib) echo "$2" > "$dir/mem" ;;
        --storage-gib) echo "$2" > "$dir/storage" ;;
        *) echo "unexpected argument $1" >&2; exit 2 ;;
      esac
      shift 2
    done ;;
  *) exit 2 ;;
esac
"#;

fn golem(program: &Path, profile: &str, adapter: Arc<dyn Adapter>) -> GolemProfileActuator {
    GolemProfileActuator::new(
        GolemProfileSpec {
            program: vec![program.to_string_lossy().into_owned()],
            profile: profile.into(),
            data_dir: Some("/srv/golem/ya-provider".into()),
            timeout: Duration::from_secs(5),
        },
        adapter,
        fast_verify(),
    )
}

#[tokio::test]
async fn golem_profile_apply_verify_undo_with_a_fake_ya_provider() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("cpu"), "7").unwrap();
    std::fs::write(d.join("mem"), "22.4").unwrap();
    std::fs::write(d.join("storage"), "180.5").unwrap();
    let program = script(&d, "ya-provider", YA_PROVIDER);
    // The golem adapter's view: hardware.json's active profile.
    let view = d.clone();
    let adapter = Arc::new(Reports(Box::new(move || {
        let num = |f: &str| read(&view.join(f)).trim().parse::<f64>().ok();
        Resources {
            cpu_cores: num("cpu"),
            memory_bytes: num("mem").map(|g| g * GIB),
            disk_bytes: num("storage").map(|g| g * GIB),
            bandwidth_bytes_per_second: None,
        }
    })));
    let a = golem(&program, "default", adapter);
    a.check("golem").await.unwrap();
    let before = Allocation {
        cpu_cores: 7.0,
        memory_bytes: 22.4 * GIB,
        disk_bytes: 180.5 * GIB,
        bandwidth_bytes_per_second: 0.0,
    };
    let to = Allocation {
        cpu_cores: 4.0,
        memory_bytes: 8.0 * GIB,
        ..before
    };
    a.apply("golem", &to).await.unwrap();
    a.verify("golem", &to).await.unwrap();
    assert_eq!(read(&d.join("cpu")).trim(), "4");
    assert_eq!(read(&d.join("mem")).trim(), "8");
    a.undo("golem", &before).await.unwrap();
    a.verify("golem", &before).await.unwrap();
    assert_eq!(read(&d.join("mem")).trim(), "22.4");
    let log = read(&d.join("argv.log"));
    assert!(
        log.contains("--data-dir /srv/golem/ya-provider profile update --name default --cpu-threads 4 --mem-gib 8 --storage-gib 180.5\n"),
        "{log}"
    );
    assert!(
        log.contains("--data-dir /srv/golem/ya-provider profile list --json\n"),
        "{log}"
    );
    // Someone changed the profile behind our back: verify says what differs.
    std::fs::write(d.join("cpu"), "2").unwrap();
    let e = a.verify("golem", &before).await.unwrap_err().to_string();
    assert!(
        e.contains("profile \"default\": cpu_threads is 2 (expected 7)"),
        "{e}"
    );
}

#[tokio::test]
async fn golem_profile_faults() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    for (f, v) in [("cpu", "2"), ("mem", "4"), ("storage", "50")] {
        std::fs::write(d.join(f), v).unwrap();
    }
    let program = script(&d, "ya-provider", YA_PROVIDER);
    // A profile that does not exist: check names it and what exists.
    let e = golem(&program, "gpu", reports_nothing())
        .check("golem")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "node golem: actuator golem_profile is not reachable: profile \"gpu\" does not exist (ya-provider has: default)"
    );
    // The tool refuses: exit status and stderr in the error.
    let e = golem(&program, "gpu", reports_nothing())
        .apply("golem", &cpu_mem(2.0, 4.0))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("exit status 1"), "{e}");
    assert!(e.contains("Profile 'gpu' does not exist"), "{e}");
    // A missing program and a hanging one.
    let e = golem(&d.join("missing"), "default", reports_nothing())
        .check("golem")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not an executable file"), "{e}");
    let hang = script(&d, "hang", "sleep 10\n");
    let mut a = GolemProfileSpec {
        program: vec![hang.to_string_lossy().into_owned()],
        profile: "default".into(),
        data_dir: None,
        timeout: Duration::from_millis(200),
    };
    let t = std::time::Instant::now();
    let e = GolemProfileActuator::new(a.clone(), reports_nothing(), fast_verify())
        .apply("golem", &cpu_mem(2.0, 4.0))
        .await
        .unwrap_err();
    assert!(matches!(e, ActuatorError::Timeout { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3));
    a.program = vec!["/bin/false".into()];
    assert!(
        GolemProfileActuator::new(a, reports_nothing(), fast_verify())
            .check("golem")
            .await
            .is_err()
    );
}

/// A systemctl that keeps each unit's CPUQuota (percent) and MemoryMax in files.
const SYSTEMCTL: &str = r#"dir="$(dirname "$0")"
echo "$@" >> "$dir/argv.log"
cmd="$1"; shift
if [ "$cmd" = set-property ]; then
  [ "$1" = --runtime ] && { echo runtime > "$dir/runtime"; shift; }
  unit="$1"; shift
  [ "$unit" = storagenode.service ] || { echo "Failed to set unit properties on $unit: Unit $unit not found." >&2; exit 1; }
  for kv in "$@"; do
    case "$kv" in
      CPUQuota=*%) v="${kv#CPUQuota=}"; echo "${v%\%}" > "$dir/quota" ;;
      MemoryMax=*) echo "${kv#MemoryMax=}" > "$dir/memmax" ;;
      *) echo "Unknown assignment: $kv" >&2; exit 1 ;;
    esac
  done
elif [ "$cmd" = show ]; then
  unit="$1"
  if [ "$unit" != storagenode.service ]; then echo "LoadState=not-found"; echo "CPUQuotaPerSecUSec=infinity"; echo "MemoryMax=infinity"; exit 0; fi
  echo "LoadState=loaded"
  if [ -f "$dir/quota" ]; then
    awk -v p="$(cat "$dir/quota")" 'BEGIN { s = p / 100; if (s == int(s)) printf "CPUQuotaPerSecUSec=%ds\n", s; else if (s < 1) printf "CPUQuotaPerSecUSec=%dms\n", s * 1000; else printf "CPUQuotaPerSecUSec=%.6fs\n", s }'
  else echo "CPUQuotaPerSecUSec=infinity"; fi
  if [ -f "$dir/memmax" ]; then echo "MemoryMax=$(cat "$dir/memmax")"; else echo "MemoryMax=infinity"; fi
else
  exit 1
fi
"#;

fn systemd(program: &Path, unit: &str, runtime: bool) -> SystemdActuator {
    SystemdActuator::new(
        SystemdSpec {
            unit: unit.into(),
            program: vec![program.to_string_lossy().into_owned()],
            runtime,
            timeout: Duration::from_secs(5),
        },
        reports_nothing(),
        fast_verify(),
    )
}

#[tokio::test]
async fn systemd_apply_verify_undo_with_a_fake_systemctl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let program = script(&d, "systemctl", SYSTEMCTL);
    let a = systemd(&program, "storagenode.service", true);
    a.check("storj").await.unwrap();
    // Unlimited at first: verify says so.
    let before = cpu_mem(0.5, 1.0);
    let e = a.verify("storj", &before).await.unwrap_err().to_string();
    assert!(
        e.contains("CPU quota is unlimited cores (expected 0.5)"),
        "{e}"
    );
    a.apply("storj", &before).await.unwrap();
    a.verify("storj", &before).await.unwrap();
    let to = cpu_mem(2.5, 3.0);
    a.apply("storj", &to).await.unwrap();
    a.verify("storj", &to).await.unwrap();
    assert_eq!(read(&d.join("quota")).trim(), "250");
    assert_eq!(read(&d.join("memmax")).trim(), "3221225472");
    a.undo("storj", &before).await.unwrap();
    a.verify("storj", &before).await.unwrap();
    let log = read(&d.join("argv.log"));
    assert!(
        log.contains(
            "set-property --runtime storagenode.service CPUQuota=250% MemoryMax=3221225472\n"
        ),
        "{log}"
    );
    assert!(
        log.contains("show storagenode.service -p LoadState -p CPUQuotaPerSecUSec -p MemoryMax\n"),
        "{log}"
    );
}

#[tokio::test]
async fn systemd_faults() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), "systemctl", SYSTEMCTL);
    let a = systemd(&program, "storj.service", false);
    let e = a.check("storj").await.unwrap_err().to_string();
    assert_eq!(
        e,
        "node storj: actuator systemd is not reachable: unit storj.service is not loaded (LoadState=not-found)"
    );
    let e = a
        .apply("storj", &cpu_mem(1.0, 1.0))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("node storj: apply failed: "), "{e}");
    assert!(e.contains("exit status 1"), "{e}");
    assert!(e.contains("Unit storj.service not found"), "{e}");
}

const STORJ_CONFIG: &str = "# Storj storage node configuration\n\
# how much disk space a node should use\n\
storage.allocated-disk-space: 1.00 TB\n\
\n\
# path to store data in\n\
storage.path: /app/config/storage\n\
server.address: :28967\n";

fn storj(config: &Path, restart: Vec<String>, adapter: Arc<dyn Adapter>) -> StorjConfigActuator {
    StorjConfigActuator::new(
        StorjConfigSpec {
            config_file: config.into(),
            restart,
            timeout: Duration::from_secs(5),
        },
        adapter,
        fast_verify(),
    )
}

#[tokio::test]
async fn storj_config_edits_one_value_restarts_and_undoes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let config = d.join("config.yaml");
    std::fs::write(&config, STORJ_CONFIG).unwrap();
    // The restart stands in for `docker restart storagenode`: it logs, and the "node" comes
    // back with the allocation from config.yaml (what the storj adapter reads from the API).
    let restart = script(
        &d,
        "restart",
        "dir=\"$(dirname \"$0\")\"\necho \"$@\" >> \"$dir/restarts.log\"\ngrep '^storage.allocated-disk-space:' \"$dir/config.yaml\" > \"$dir/node_state\"\n",
    );
    let view = d.clone();
    let adapter = Arc::new(Reports(Box::new(move || {
        let line = read(&view.join("node_state"));
        let v = line.split_once(':').map(|(_, v)| v.trim().to_string());
        Resources {
            disk_bytes: v.and_then(|v| depin_orcha::schema::units::parse_size(&v).ok()),
            ..Default::default()
        }
    })));
    let argv = vec![restart.to_string_lossy().into_owned(), "storagenode".into()];
    let a = storj(&config, argv, adapter);
    a.check("storj").await.unwrap();
    let before = Allocation {
        disk_bytes: 1e12,
        ..Allocation::default()
    };
    let to = Allocation {
        disk_bytes: 1.5e12,
        ..Allocation::default()
    };
    a.apply("storj", &to).await.unwrap();
    a.verify("storj", &to).await.unwrap();
    assert_eq!(
        read(&config),
        STORJ_CONFIG.replace("1.00 TB", "1.50 TB"),
        "only the value changes"
    );
    assert_eq!(read(&d.join("restarts.log")), "storagenode\n");
    a.undo("storj", &before).await.unwrap();
    a.verify("storj", &before).await.unwrap();
    assert_eq!(read(&config), STORJ_CONFIG, "byte for byte as before");
    assert_eq!(read(&d.join("restarts.log")), "storagenode\nstoragenode\n");
}

#[tokio::test]
async fn storj_config_faults() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let config = d.join("config.yaml");
    std::fs::write(&config, STORJ_CONFIG).unwrap();
    let failing = script(
        &d,
        "restart",
        "echo 'Error: No such container: storagenode' >&2\nexit 1\n",
    );
    let a = storj(
        &config,
        vec![failing.to_string_lossy().into_owned()],
        reports_nothing(),
    );
    let e = a
        .apply(
            "storj",
            &Allocation {
                disk_bytes: 2e12,
                ..Allocation::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("exit status 1"), "{e}");
    assert!(e.contains("No such container: storagenode"), "{e}");
    // A config without the key, and a missing file: check says which file and why.
    std::fs::write(&config, "storage.path: /data\n").unwrap();
    let e = a.check("storj").await.unwrap_err().to_string();
    assert!(
        e.contains("config.yaml: no uncommented `storage.allocated-disk-space:` line"),
        "{e}"
    );
    let gone = storj(
        &d.join("missing.yaml"),
        vec!["true".into()],
        reports_nothing(),
    );
    let e = gone.check("storj").await.unwrap_err().to_string();
    assert!(e.contains("missing.yaml: "), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Through the controller: rules name the actuators, wiring builds them, the engine executes.

const CONTROLLER_CONFIG: &str = r#"
host:
  capacity: {cpu_cores: 8, memory_bytes: 16GiB, disk_bytes: 2TB, bandwidth_bytes_per_second: 100MB}
prices: {GLM: 0.3, STORJ: 0.4}
nodes:
  - name: golem
    kind: sim
    sim: {protocol: golem, allocation: {cpu_cores: 2, memory_bytes: 4GiB, disk_bytes: 100GB, bandwidth_bytes_per_second: 1MB}}
  - name: storj
    kind: sim
    sim: {protocol: storj, allocation: {cpu_cores: 4, memory_bytes: 4GiB, disk_bytes: 1TB, bandwidth_bytes_per_second: 1MB}}
  - name: grass
    kind: sim
    sim: {protocol: grass, allocation: {cpu_cores: 1, memory_bytes: 1GiB, disk_bytes: 10GB, bandwidth_bytes_per_second: 1MB}}
"#;

fn controller_rules(socket: &Path) -> String {
    format!(
        r#"
nodes:
  golem:
    value_per_hour: 'vector(1)'
    response: {{cpu_cores: {{model: marginal, knee: 2}}}}
    bounds: {{cpu_cores: [1, 6]}}
    actuator: {{kind: docker, container: golem-provider, socket: "{}", timeout: 2s}}
  storj:
    value_per_hour: 'vector(1)'
    response: {{cpu_cores: {{model: marginal, knee: 2}}}}
    bounds: {{cpu_cores: [1, 6]}}
    actuator: sim
  grass:
    value_per_hour: 'vector(1)'
    response: {{cpu_cores: {{model: marginal, knee: 2}}}}
    actuator: storj_config      # no config_file: this node is not moved, the others are
"#,
        socket.display()
    )
}

struct AllUp(depin_orcha::clock::ManualClock, Vec<&'static str>);

impl depin_orcha::reallocation::HealthSource for AllUp {
    fn snapshot(&self) -> Vec<depin_orcha::coordinator::NodeHealth> {
        use depin_orcha::clock::Clock;
        self.1
            .iter()
            .map(|n| depin_orcha::coordinator::NodeHealth {
                name: n.to_string(),
                protocol: n.to_string(),
                up: true,
                polled: true,
                last_success_ms: Some(self.0.now_ms()),
                consecutive_failures: 0,
                last_error: None,
                degraded: None,
            })
            .collect()
    }
}

#[tokio::test]
async fn the_controller_moves_cores_through_the_docker_engine_and_rolls_back_a_failed_step() {
    use depin_orcha::adapters::sim::SimNode;
    use depin_orcha::adapters::Allocatable;
    use depin_orcha::reallocation::controller::{ApplyRequest, ControllerParts};
    use depin_orcha::reallocation::{controlled_nodes, Controller, ControllerOptions, History};
    use std::collections::BTreeMap;

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let engine = engine_with(
        "golem-provider",
        HostConfig {
            nano_cpus: 2_000_000_000,
            ..Default::default()
        },
    );
    serve(&sock, engine.clone());
    let config = depin_orcha::config::parse_str(CONTROLLER_CONFIG, "test.yml")
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = depin_orcha::optimizer::parse_str(&controller_rules(&sock), "opt.yml")
        .unwrap_or_else(|e| panic!("{e}"));
    let clock = depin_orcha::clock::ManualClock::new(1_767_225_600_000);
    let shared: depin_orcha::clock::SharedClock = Arc::new(clock.clone());
    let sim = |name: &str| {
        let n = config.nodes.iter().find(|n| n.name == name).unwrap();
        let Some(spec) = n
            .kind
            .as_any()
            .downcast_ref::<depin_orcha::adapters::sim::SimSpec>()
        else {
            panic!("sim nodes only")
        };
        Arc::new(SimNode::new(name, spec, shared.clone()))
    };
    let storj = sim("storj");
    // golem's adapter reports the container's CPUs, as a node in a container would.
    struct Golem(Shared);
    impl Adapter for Golem {
        fn name(&self) -> &str {
            "golem"
        }
        fn protocol(&self) -> &str {
            "golem"
        }
        fn poll(&self) -> PollFuture<'_> {
            let hc = self.0.lock().unwrap().containers["golem-provider"].clone();
            let o = Observation {
                allocation: Resources {
                    cpu_cores: Some(hc.nano_cpus as f64 / 1e9),
                    ..Default::default()
                },
                ..Default::default()
            };
            Box::pin(std::future::ready(Ok(o)))
        }
    }
    let adapters: Vec<Arc<dyn Adapter>> =
        vec![Arc::new(Golem(engine.clone())), storj.clone(), sim("grass")];
    let (nodes, warnings) = controlled_nodes(&config, &rules, &adapters);
    assert_eq!(
        warnings,
        ["nodes.grass.actuator: storj_config needs config_file (the node's config.yaml); there is no default; node grass is observed but not moved"]
    );
    let kinds: BTreeMap<&str, Option<&str>> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.actuator.as_ref().map(|a| a.kind())))
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("golem", Some("docker")),
            ("grass", None),
            ("storj", Some("sim"))
        ])
    );
    let controller = Controller::new(ControllerParts {
        rules,
        options: ControllerOptions {
            dry_run: false,
            rollback_margin: 0.1,
            host_capacity: config.host.capacity,
        },
        nodes,
        planner: Box::new(depin_orcha::reallocation::OptimizerPlanner::default()),
        health: Arc::new(AllUp(clock.clone(), vec!["golem", "storj", "grass"])),
        db: Arc::new(depin_orcha::tsdb::Db::in_memory()),
        engine: depin_orcha::promql::Engine::default(),
        clock: shared,
        history: History::in_memory(),
        registry: prometheus::Registry::new(),
    })
    .unwrap();
    let cores = |golem: f64, storj: f64| ApplyRequest {
        allocations: Some(BTreeMap::from([
            (
                "golem".to_string(),
                Resources {
                    cpu_cores: Some(golem),
                    ..Default::default()
                },
            ),
            (
                "storj".to_string(),
                Resources {
                    cpu_cores: Some(storj),
                    ..Default::default()
                },
            ),
        ])),
        force: true,
    };
    // storj releases two cores (sim), then golem's container gets them (Engine API).
    let e = controller.handle_request(1, cores(4.0, 2.0)).await.unwrap();
    assert!(
        e.decision.to_string().starts_with("applied"),
        "{}",
        e.decision
    );
    assert_eq!(
        engine.lock().unwrap().containers["golem-provider"].nano_cpus,
        4_000_000_000
    );
    assert_eq!(storj.allocation().cpu_cores, 2.0);
    // The Engine refuses the next update: storj's release is undone, golem keeps 4 CPUs.
    engine.lock().unwrap().fail_updates = 1;
    let e = controller.handle_request(2, cores(5.0, 1.0)).await.unwrap();
    assert!(
        e.decision.to_string().starts_with("rolled_back"),
        "{}",
        e.decision
    );
    assert!(
        e.decision.to_string().contains("answered 500"),
        "{}",
        e.decision
    );
    assert_eq!(storj.allocation().cpu_cores, 2.0);
    assert_eq!(
        engine.lock().unwrap().containers["golem-provider"].nano_cpus,
        4_000_000_000
    );
}

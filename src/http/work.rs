//! Where the API's heavy work runs, so that `/metrics`, health checks and the poll loops stay on
//! time whatever clients ask: parsing PromQL and `match[]` selectors (which compiles their
//! regular expressions), evaluating, reading label sets and encoding answers all run on the
//! threads of a [`WorkPool`], at a lower scheduling priority than the async workers, each under
//! one of the query slots (`AppState::query_slots`) and with a share of the memory budget
//! (`--query.max-memory`). A request whose client goes away cancels its work: hyper drops the
//! request's future, and dropping it sets the flag the evaluator checks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::params::{self, Params};
use super::{ApiError, AppState, ErrorType, HttpResponse};
use crate::promql::Limits;

/// How much lower the work threads' scheduling priority is, in Linux nice levels. The
/// scheduler shares a core by weight (1024 at nice 0, 15 at nice 19): at 19, twenty busy work
/// threads together weigh less than a third of one async worker, which then gets nearly all the
/// core it asks for; at 10 (weight 110 each) they took three quarters of it, and `/metrics`
/// waited up to 300 ms behind hostile queries. Work still gets every cycle nothing else wants.
pub const WORK_NICENESS: i32 = 19;
/// Stack of a work thread: evaluation recurses once per level of the expression (at most
/// `promql::MAX_NESTING`), as on the runtime's own threads.
const WORK_STACK_BYTES: usize = 8 << 20;
/// A work thread with nothing to do for this long ends.
const IDLE_EXIT: Duration = Duration::from_secs(60);
/// How long a query may evaluate on an async worker ([`try_inline`]) before it is stopped and
/// handed to a work thread. The last hour of a host's series evaluates in 0.05-0.5 ms.
pub const INLINE_BUDGET: Duration = Duration::from_millis(2);

type Job = Box<dyn FnOnce() + Send>;

/// Work threads: two per core. More buy no throughput (the work is CPU-bound), and each one
/// more allocating beside the async workers lengthens their waits for malloc's arena locks,
/// which a preempted low-priority thread can hold: with up to 84 threads `/metrics` waited
/// 100 ms and more under a hostile crowd, with four its 99th percentile stayed near 30 ms
/// (2-core machine, `tests/hostile_http.rs`). The query slots admit more queries than this;
/// the others wait for a thread within their timeout.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// Threads for CPU-heavy work at a lower priority, started when needed (up to `max_threads`)
/// and ended after a minute without work. Callers bound how much they submit (slots), so a job
/// never waits for a thread long.
#[derive(Clone)]
pub struct WorkPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    state: Mutex<PoolState>,
    ready: Condvar,
    max_threads: usize,
}

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

impl WorkPool {
    pub fn new(max_threads: usize) -> WorkPool {
        WorkPool {
            inner: Arc::new(PoolInner {
                state: Mutex::new(PoolState::default()),
                ready: Condvar::new(),
                max_threads: max_threads.max(1),
            }),
        }
    }

    /// Runs `f` on a work thread; the receiver gets its result, or the panic it ended with.
    pub fn spawn<T, F>(&self, f: F) -> tokio::sync::oneshot::Receiver<std::thread::Result<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
        let start_one = {
            let mut st = lock(&self.inner.state);
            st.jobs.push_back(job);
            let start = st.idle < st.jobs.len() && st.threads < self.inner.max_threads;
            if start {
                st.threads += 1;
            }
            start
        };
        if start_one {
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name("query-worker".into())
                .stack_size(WORK_STACK_BYTES)
                .spawn(move || work_thread(inner));
            if let Err(e) = spawned {
                lock(&self.inner.state).threads -= 1;
                tracing::warn!(error = %e, "starting a query worker thread failed");
            }
        }
        self.inner.ready.notify_one();
        rx
    }

    /// Threads running now (for tests and the `/metrics` gauge).
    pub fn threads(&self) -> usize {
        lock(&self.inner.state).threads
    }
}

fn lock(m: &Mutex<PoolState>) -> std::sync::MutexGuard<'_, PoolState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn work_thread(inner: Arc<PoolInner>) {
    lower_priority();
    let mut st = lock(&inner.state);
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            job();
            st = lock(&inner.state);
            continue;
        }
        st.idle += 1;
        let (next, timeout) = inner
            .ready
            .wait_timeout(st, IDLE_EXIT)
            .unwrap_or_else(|e| e.into_inner());
        st = next;
        st.idle -= 1;
        if timeout.timed_out() && st.jobs.is_empty() {
            st.threads -= 1;
            return;
        }
    }
}

/// Lowers the calling thread's scheduling priority by [`WORK_NICENESS`]. On Linux the nice
/// value belongs to the thread, so the process' other threads keep theirs.
pub(super) fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the scheduling priority of the thread it names (this
    // one); raising the nice value needs no privilege, and a failure changes nothing.
    unsafe {
        let tid = libc::gettid();
        let now = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        libc::setpriority(
            libc::PRIO_PROCESS,
            tid as libc::id_t,
            (now + WORK_NICENESS).min(19),
        );
    }
}

/// Sets its flag when dropped: held across the wait for a job, it tells the job that nobody
/// waits for the answer any more (the client went away, or the timeout passed).
pub struct CancelOnDrop(Arc<AtomicBool>);

impl CancelOnDrop {
    pub fn new() -> CancelOnDrop {
        CancelOnDrop(Arc::new(AtomicBool::new(false)))
    }
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Default for CancelOnDrop {
    fn default() -> Self {
        CancelOnDrop::new()
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `f` on the work pool under a query slot, with a fresh share of the memory budget and a
/// cancellation flag, and answers what it answers. Waiting for a slot and for `f` together take
/// at most `timeout`; beyond, the client gets a timeout error and `f` is told to stop.
pub async fn run_limited<F>(state: &AppState, timeout: Duration, f: F) -> HttpResponse
where
    F: FnOnce(Limits) -> HttpResponse + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let cancel = CancelOnDrop::new();
    let timed_out = |in_what: &str| {
        ApiError::new(ErrorType::Timeout, format!("query timed out in {in_what}")).into_response()
    };
    let permit =
        match tokio::time::timeout_at(deadline, state.query_slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => {
                return ApiError::new(ErrorType::Unavailable, "the query queue is closed")
                    .into_response()
            }
            Err(_) => return timed_out("query queue"),
        };
    let limits = Limits::new(state.memory.reservation(), cancel.flag());
    // The permit moves into the job, so the slot stays taken until the work has stopped, even
    // when the client has been answered already.
    let job = state.pool.spawn(move || {
        let _slot = permit;
        f(limits)
    });
    match tokio::time::timeout_at(deadline, job).await {
        Ok(Ok(Ok(resp))) => resp,
        Ok(Ok(Err(_))) | Ok(Err(_)) => {
            ApiError::new(ErrorType::Internal, "the request's handler failed").into_response()
        }
        Err(_) => timed_out("expression evaluation"),
    }
}

/// Answers `/api/v1/query` and `/api/v1/query_range` on the calling async worker when the
/// query is likely quick, since handing it to a work thread and back costs about 0.1 ms, as
/// much as evaluating a query over the last hour. Likely quick: its text parsed before (no
/// parsing, so no regular expression compiled here) and no evaluation of it over a span of the
/// same order went past [`INLINE_BUDGET`]. One query at a time is evaluated this way
/// (`AppState::inline_slot`), under a query slot taken only if one is free, and stopped at the
/// budget: the other async workers stay free for `/metrics` and the poll loops, and a query
/// over the budget is marked slow and given back (`None`) to be run on a work thread.
pub fn try_inline(state: &AppState, path: &str, p: &Params) -> Option<HttpResponse> {
    let class = span_class(path, p)?;
    let text = p.get("query");
    if !crate::promql::known_quick(text, class) {
        return None;
    }
    let _inline = state.inline_slot.try_acquire().ok()?;
    let _slot = state.query_slots.try_acquire().ok()?;
    let start = std::time::Instant::now();
    // Nobody cancels: the worker does nothing else until the budget is over.
    let cancel = CancelOnDrop::new();
    let mut limits = Limits::new(state.memory.reservation(), cancel.flag());
    limits.deadline = Some(start + INLINE_BUDGET);
    let result = super::api::dispatch(state, path, p, &mut limits);
    let over = start.elapsed() > INLINE_BUDGET;
    if over {
        crate::promql::mark_slow(text, class);
    }
    if over && matches!(&result, Err(e) if e.kind == ErrorType::Timeout) {
        state
            .metrics
            .inline
            .with_label_values(&["over_budget"])
            .inc();
        return None;
    }
    state.metrics.inline.with_label_values(&["answered"]).inc();
    Some(super::api_response_charged(result, limits.memory))
}

/// The order of a query's span, for [`crate::promql::mark_slow`]: 0 for an instant query, one
/// more than the bit length of `end - start` in seconds for a range query; `None` for other
/// paths and for ranges that do not parse (the work thread answers with the error).
fn span_class(path: &str, p: &Params) -> Option<u32> {
    match path {
        "/api/v1/query" => Some(0),
        "/api/v1/query_range" => {
            let start = params::parse_time(p.get("start")).ok()?;
            let end = params::parse_time(p.get("end")).ok()?;
            let secs = (end.saturating_sub(start) / 1000).max(0) as u64;
            Some(1 + (u64::BITS - secs.leading_zeros()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_lowered_priority_threads_and_panics_are_caught() {
        let pool = WorkPool::new(2);
        let nice = pool.spawn(|| {
            // SAFETY: reads the calling thread's own nice value.
            #[cfg(target_os = "linux")]
            unsafe {
                libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
            }
            #[cfg(not(target_os = "linux"))]
            WORK_NICENESS
        });
        let nice = nice.await.unwrap().unwrap();
        assert!(nice >= WORK_NICENESS.min(19), "nice {nice}");
        let r = pool.spawn(|| -> u8 { panic!("boom") }).await.unwrap();
        assert!(r.is_err());
        let many: Vec<_> = (0..10).map(|i| pool.spawn(move || i * 2)).collect();
        let mut sum = 0;
        for rx in many {
            sum += rx.await.unwrap().unwrap();
        }
        assert_eq!(sum, 90);
        assert!(pool.threads() <= 2);
    }

    #[test]
    fn dropping_the_guard_sets_the_flag() {
        let g = CancelOnDrop::new();
        let f = g.flag();
        assert!(!f.load(Ordering::Relaxed));
        drop(g);
        assert!(f.load(Ordering::Relaxed));
    }
}

//! The process' heap against the operating system: how many malloc arenas glibc may open, and
//! handing freed pages back on a timer. Nothing here allocates for anyone else.
//!
//! Why: glibc gives each thread that allocates concurrently an arena of its own (up to eight
//! per core) and returns freed memory to the kernel only from the top of an arena. A server
//! whose tokio workers and blocking threads take turns building query results and scrape
//! bodies therefore holds freed pages spread over several arenas, and its resident memory can
//! creep up over hours while the live heap stays flat (heaptrack: about 4 MB on the demo).
//! Two arenas keep contention low for two workers, and `malloc_trim(0)` (which since glibc
//! 2.8 also releases whole free pages inside every arena, not only at the top) once a minute
//! costs well under a millisecond. On the demo's steady load the difference measured was small
//! (README, Soak); a burstier load leaves more freed pages behind. Other C libraries and
//! targets: both are no-ops.

use std::time::Duration;

/// Arenas glibc may use; the runtime has two workers.
const MAX_ARENAS: i32 = 2;

/// How often freed pages are handed back.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(60);

/// Caps glibc's malloc arenas. Call before any thread is started (arenas that exist stay).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; any value is accepted or refused
    // with a return of 0, and no memory is touched.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
    }
}

/// Returns free heap pages of every arena to the kernel; true when some were released.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes each arena's lock itself; freed chunks only are released.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Calls [`trim`] every `every` until `stop` turns true (on a blocking thread: it holds arena
/// locks while it walks them, and an async worker should not wait for that).
pub async fn trim_periodically(every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A freed megabyte-sized pile of small allocations leaves the resident set after a trim.
    /// The resident set is the whole process', and the harness runs other tests on other
    /// threads at the same time, so the measurement runs in a child process that runs only
    /// [`trim_measured_alone`]. Reads /proc, so Linux with glibc only.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn trim_gives_freed_pages_back() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "memory::tests::trim_measured_alone",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("1 passed"),
            "the measurement did not run: {text}"
        );
    }

    /// The measurement of [`trim_gives_freed_pages_back`]; ignored in a normal run, where other
    /// tests allocate and free in the same process while it measures.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    #[ignore = "run alone by trim_gives_freed_pages_back"]
    fn trim_measured_alone() {
        fn anon_kb() -> u64 {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            s.lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap()
        }
        // On a thread of its own, so the allocations land in an arena of their own rather
        // than under live data of the test harness. Small blocks (below the mmap threshold)
        // are what an arena keeps after they are freed.
        let (before, freed, after) = std::thread::spawn(|| {
            let before = anon_kb();
            let mut keep: Vec<Vec<u8>> = (0..40_000).map(|i| vec![i as u8; 1000]).collect();
            // Read, as far as the optimizer knows: a release build removes unread allocations.
            std::hint::black_box(&mut keep);
            // A last small block keeps the top of the arena in use, so only a trim of the
            // pages inside the arena can release the rest.
            let pin = std::hint::black_box(vec![1u8; 100]);
            keep.clear();
            keep.shrink_to_fit();
            let freed = anon_kb();
            trim();
            let after = anon_kb();
            drop(pin);
            (before, freed, after)
        })
        .join()
        .unwrap();
        assert!(
            freed > before + 20_000,
            "40 MB written: {before} -> {freed} kB"
        );
        assert!(
            after + 20_000 < freed,
            "trim released less than 20 of the 40 MB: {freed} -> {after} kB"
        );
    }
}

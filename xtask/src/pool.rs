//! A worker pool for independent jobs (the runs of a table, each a `salaug` process).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Result;

/// Runs `job(0)`, …, `job(n − 1)` on `workers` threads (at least one), which take the jobs in
/// order. After a job fails no new job starts; the first error is returned once the running
/// jobs end.
pub fn run_all(workers: usize, n: usize, job: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= n || failed.lock().expect("lock").is_some() {
                    break;
                }
                if let Err(e) = job(k) {
                    failed.lock().expect("lock").get_or_insert(e);
                    break;
                }
            });
        }
    });
    match failed.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_and_a_failure_stops_new_ones() {
        let done = Mutex::new(Vec::new());
        run_all(3, 10, |k| {
            done.lock().unwrap().push(k);
            Ok(())
        })
        .unwrap();
        let mut done = done.into_inner().unwrap();
        done.sort();
        assert_eq!(done, (0..10).collect::<Vec<_>>());

        let started = AtomicUsize::new(0);
        let err = run_all(1, 10, |k| {
            started.fetch_add(1, Ordering::SeqCst);
            anyhow::ensure!(k != 2, "job {k} failed");
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "job 2 failed");
        assert_eq!(started.load(Ordering::SeqCst), 3);
    }
}

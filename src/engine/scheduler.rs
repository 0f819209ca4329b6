//! Stage scheduling: runs the stages a plan needs, each as soon as the stages it depends on are
//! done, independent ones in parallel (up to `jobs` at once). The first failure stops new
//! stages from starting and raises the [`Cancel`] flag that running stages check between
//! steps; the scheduler waits for them before it returns, so nothing runs after it returns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use crate::plan::{BuildPlan, Dependency, Stage};

/// Shared cancellation flag: set on the first failure or on Ctrl-C.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// The flag itself, for a signal handler to set (`signal_hook::flag::register`).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Runs one stage. `done` holds the results of every stage it depends on.
pub trait StageRunner: Sync {
    type Output: Send + Sync;
    type Error: Send;

    fn run_stage(
        &self,
        stage: &Stage,
        done: &BTreeMap<usize, Arc<Self::Output>>,
        cancel: &Cancel,
    ) -> Result<Self::Output, Self::Error>;
}

/// Runs every needed stage of `plan`; returns each stage's output by index, or the first
/// error (in stage order when several stages fail at once).
pub fn run_stages<R: StageRunner>(
    plan: &BuildPlan,
    runner: &R,
    jobs: usize,
    cancel: &Cancel,
) -> Result<BTreeMap<usize, Arc<R::Output>>, R::Error> {
    let jobs = jobs.max(1);
    let needed: Vec<&Stage> = plan.planned_stages().collect();
    let mut done: BTreeMap<usize, Arc<R::Output>> = BTreeMap::new();
    let mut failures: BTreeMap<usize, R::Error> = BTreeMap::new();
    let mut started: Vec<usize> = Vec::new();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<R::Output, R::Error>)>();
        let mut running = 0usize;
        loop {
            if failures.is_empty() && !cancel.is_cancelled() {
                for stage in &needed {
                    if running >= jobs {
                        break;
                    }
                    if started.contains(&stage.index) || !stage_ready(stage, &done) {
                        continue;
                    }
                    started.push(stage.index);
                    running += 1;
                    let deps: BTreeMap<usize, Arc<R::Output>> =
                        stage_deps(stage).filter_map(|i| done.get(&i).map(|o| (i, Arc::clone(o)))).collect();
                    let tx = tx.clone();
                    let cancel = cancel.clone();
                    let stage: &Stage = stage;
                    scope.spawn(move || {
                        let result = runner.run_stage(stage, &deps, &cancel);
                        // The receiver outlives every sender in this scope.
                        let _ = tx.send((stage.index, result));
                    });
                }
            }
            if running == 0 {
                break;
            }
            let Ok((index, result)) = rx.recv() else { break };
            running -= 1;
            match result {
                Ok(output) => {
                    done.insert(index, Arc::new(output));
                }
                Err(e) => {
                    cancel.cancel();
                    failures.insert(index, e);
                }
            }
        }
    });
    match failures.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(done),
    }
}

fn stage_deps(stage: &Stage) -> impl Iterator<Item = usize> + '_ {
    stage.dependencies.iter().filter_map(|d| match d {
        Dependency::Stage { index } => Some(*index),
        Dependency::Image { .. } => None,
    })
}

fn stage_ready<T>(stage: &Stage, done: &BTreeMap<usize, T>) -> bool {
    stage_deps(stage).all(|i| done.contains_key(&i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::lower::{parse_and_lower, LowerOptions};
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Records the order of starts and ends and the highest number of stages at once.
    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<String>>,
        now: AtomicUsize,
        peak: AtomicUsize,
        fail: Option<usize>,
        /// Keep each stage running until a sibling starts (to observe overlap).
        wait_for_sibling: bool,
    }

    impl StageRunner for Recorder {
        type Output = usize;
        type Error = String;

        fn run_stage(
            &self,
            stage: &Stage,
            done: &BTreeMap<usize, Arc<usize>>,
            cancel: &Cancel,
        ) -> Result<usize, String> {
            let at_once = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(at_once, Ordering::SeqCst);
            self.log.lock().map_err(|e| e.to_string())?.push(format!("start {}", stage.index));
            // Stay running until a sibling has had the chance to start (or 2 s pass): the test
            // asserts overlap, not speed.
            for _ in 0..if self.wait_for_sibling { 200 } else { 0 } {
                if self.peak.load(Ordering::SeqCst) > 1 || cancel.is_cancelled() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            self.now.fetch_sub(1, Ordering::SeqCst);
            self.log.lock().map_err(|e| e.to_string())?.push(format!("end {}", stage.index));
            if self.fail == Some(stage.index) {
                return Err(format!("stage {} failed", stage.index));
            }
            Ok(stage.index * 10 + done.len())
        }
    }

    fn plan(text: &str) -> BuildPlan {
        parse_and_lower(text, "Dockerfile", &LowerOptions::default()).expect("lowers")
    }

    const DIAMOND: &str = "FROM busybox AS a\nRUN a\nFROM busybox AS b\nRUN b\nFROM busybox AS unused\nRUN u\nFROM a\nCOPY --from=b /x /x\n";

    #[test]
    fn independent_stages_overlap_and_dependents_wait() {
        let p = plan(DIAMOND);
        let rec = Recorder { wait_for_sibling: true, ..Recorder::default() };
        let out = run_stages(&p, &rec, 4, &Cancel::new()).expect("builds");
        assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![0, 1, 3], "the unused stage is skipped");
        assert_eq!(*out[&3], 32, "the final stage saw both of its dependencies");
        assert!(rec.peak.load(Ordering::SeqCst) >= 2, "stages 0 and 1 ran at the same time");
        let log = rec.log.lock().expect("log").clone();
        let pos = |s: &str| log.iter().position(|l| l == s).expect("logged");
        assert!(pos("end 0") < pos("start 3") && pos("end 1") < pos("start 3"), "{log:?}");
    }

    #[test]
    fn one_job_runs_stages_one_at_a_time() {
        let p = plan(DIAMOND);
        let rec = Recorder::default();
        run_stages(&p, &rec, 1, &Cancel::new()).expect("builds");
        assert_eq!(rec.peak.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failure_stops_later_stages_and_cancels() {
        let p = plan(DIAMOND);
        let rec = Recorder { fail: Some(1), wait_for_sibling: true, ..Recorder::default() };
        let cancel = Cancel::new();
        let err = run_stages(&p, &rec, 4, &cancel).expect_err("fails");
        assert_eq!(err, "stage 1 failed");
        assert!(cancel.is_cancelled());
        let log = rec.log.lock().expect("log").clone();
        assert!(!log.contains(&"start 3".to_string()), "{log:?}");
    }
}

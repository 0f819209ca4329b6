//! The executor's unit tests: builds run against a temp store with a recording container
//! runner, so they need no root and run no container.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{EventSink, ImageState, StageExecutor};
use crate::context::BuildContext;
use crate::engine::cache::CacheIndex;
use crate::engine::runner::recording::{RecordedRun, RecordingRunner};
use crate::engine::scheduler::{run_stages, Cancel};
use crate::engine::BuildError;
use crate::events::BuildEvent;
use crate::frontend::lower::{lower, LowerOptions};
use crate::frontend::parser;
use crate::layer::diff::DiffOptions;
use crate::plan::BuildPlan;
use crate::runtime::NetworkMode;
use crate::store::ImageStore;

/// A temp store and context to build in.
struct Bench {
    dir: tempfile::TempDir,
    store: ImageStore,
}

impl Bench {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("context")).expect("context dir");
        let store = ImageStore::open(&dir.path().join("store")).expect("store");
        Bench { dir, store }
    }

    fn plan(&self, dockerfile: &str) -> BuildPlan {
        let df = parser::parse(dockerfile, "Dockerfile").expect("parse");
        lower(&df, dockerfile, &LowerOptions::default()).expect("lower")
    }

    /// Builds `dockerfile` with `runner`; returns the target's state (or the error) and the events.
    fn build(
        &self,
        dockerfile: &str,
        runner: &RecordingRunner,
    ) -> (Result<Arc<ImageState>, BuildError>, Vec<BuildEvent>) {
        let plan = self.plan(dockerfile);
        let context = BuildContext::open(&self.dir.path().join("context"), None).expect("context");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink_events = Arc::clone(&events);
        let sink: EventSink = Arc::new(move |e: &BuildEvent| sink_events.lock().expect("events").push(e.clone()));
        let executor = StageExecutor {
            store: &self.store,
            cache: CacheIndex::open(&self.store.root().join("cache")).expect("cache"),
            context: &context,
            events: sink,
            total_steps: plan.step_count(),
            no_cache: false,
            network: NetworkMode::Host,
            extra_hosts: Vec::new(),
            requested_isolation: crate::runtime::Isolation::Root,
            isolation: std::sync::Mutex::new(Some(Ok(crate::runtime::IsolationChoice {
                isolation: crate::runtime::Isolation::Root,
                reason: "the recording runner".into(),
                usual: true,
            }))),
            kept_rootfs: Default::default(),
            diff: DiffOptions::default(),
            created: "2020-01-01T00:00:00Z".into(),
            state_dir: self.dir.path().join("run"),
            platform: crate::image::Platform { os: "linux".into(), arch: "amd64".into(), variant: None },
            stage_names: plan.stages.iter().map(|s| s.name.clone()).collect(),
            stages_read_by_others: Default::default(),
            // Resolved once from the settings: a RUN never reads the environment.
            proxy_args: BTreeMap::from([("HTTP_PROXY".to_string(), "http://proxy:3128".to_string())]),
            secrets: &[],
            ssh_agents: &[],
            allowed: &[],
            runner,
            imported: &Default::default(),
            classic: &Default::default(),
            used: Default::default(),
        };
        let result = run_stages(&plan, &executor, 1, &Cancel::new())
            .map(|mut outputs| outputs.remove(&plan.target).expect("target built"));
        let events = events.lock().expect("events").clone();
        (result, events)
    }
}

fn hits(events: &[BuildEvent]) -> usize {
    events.iter().filter(|e| matches!(e, BuildEvent::CacheHit { .. })).count()
}

/// A runner whose command writes `/out` into the upper dir.
fn writes_a_file() -> RecordingRunner {
    RecordingRunner::with_effect(|run: &RecordedRun| {
        let upper = run.upper.as_ref().expect("an overlay");
        std::fs::write(upper.join("out"), "made by RUN").expect("write into upper");
        0
    })
}

#[test]
fn a_run_step_gets_its_command_env_user_workdir_mounts_and_network() {
    let bench = Bench::new();
    let runner = RecordingRunner::new();
    let dockerfile = "FROM scratch\nARG V=1\nENV A=b\nWORKDIR /w\nUSER 1000:1000\n\
                      RUN --network=none --mount=type=tmpfs,target=/t echo $V\n";
    let (result, _) = bench.build(dockerfile, &runner);
    result.expect("build");
    let runs = runner.recorded();
    let [run] = runs.as_slice() else { panic!("one RUN expected, got {runs:?}") };
    assert_eq!(run.args, ["/bin/sh", "-c", "echo $V"]);
    assert_eq!(
        run.env,
        [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "A=b",
            "V=1",
            "HTTP_PROXY=http://proxy:3128"
        ]
    );
    assert_eq!(run.user.as_deref(), Some("1000:1000"));
    assert_eq!(run.working_dir.as_deref(), Some("/w"));
    assert_eq!(run.network, NetworkMode::None);
    assert_eq!(run.mounts, [("/t".to_string(), "tmpfs")]);
    // The lower dirs are the image's layers, the WORKDIR's first.
    assert_eq!(run.lower.len(), 1);
}

#[test]
fn a_failing_run_reports_its_exit_status_and_the_last_image() {
    let bench = Bench::new();
    let runner = RecordingRunner::with_effect(|_| 3);
    let (result, _) = bench.build("FROM scratch\nENV A=b\nRUN false\n", &runner);
    match result {
        Err(BuildError::RunFailed { step, command, code, last_image }) => {
            assert_eq!((step, command.as_str(), code), (3, "/bin/sh -c false", 3));
            assert!(last_image.is_some_and(|id| id.starts_with("sha256:")));
        }
        other => panic!("expected RunFailed, got {other:?}"),
    }
}

#[test]
fn a_runtime_failure_names_its_step_and_keeps_its_message() {
    let bench = Bench::new();
    let runner = RecordingRunner::with_outcome(|_| {
        Err(crate::runtime::RuntimeError::InvalidSpec { id: "c".into(), reason: "no overlay here".into() })
    });
    let (result, _) = bench.build("FROM scratch\nENV A=b\nRUN true\n", &runner);
    let err = result.expect_err("the runtime failed");
    assert_eq!(err.step(), Some(3));
    let plain = BuildError::Runtime(crate::runtime::RuntimeError::InvalidSpec {
        id: "c".into(),
        reason: "no overlay here".into(),
    });
    assert_eq!(err.to_string(), plain.to_string());
}

#[test]
fn a_second_build_hits_and_a_changed_step_misses() {
    let bench = Bench::new();
    let runner = writes_a_file();
    let first = "FROM scratch\nENV A=b\nRUN make\n";
    let (one, events) = bench.build(first, &runner);
    let one = one.expect("first build");
    assert_eq!(hits(&events), 0);
    let layers = one.stored.as_ref().expect("stored").layers.len();
    assert_eq!(layers, 1, "the RUN wrote a layer");
    assert_eq!(runner.recorded().len(), 1);

    let (two, events) = bench.build(first, &runner);
    assert_eq!(two.expect("cached build").id(), one.id());
    assert_eq!(hits(&events), 2, "{events:?}");
    assert_eq!(runner.recorded().len(), 1, "a hit runs nothing");

    let (three, events) = bench.build("FROM scratch\nENV A=b\nRUN make all\n", &runner);
    assert_ne!(three.expect("changed build").id(), one.id());
    assert_eq!(hits(&events), 1, "ENV hits, the changed RUN misses");
    assert_eq!(runner.recorded().len(), 2);
}

#[test]
fn a_config_only_step_runs_nothing_and_adds_an_empty_history_entry() {
    let bench = Bench::new();
    let runner = RecordingRunner::new();
    let (result, events) = bench.build("FROM scratch\nENV A=b\nLABEL x=y\n", &runner);
    let state = result.expect("build");
    assert!(runner.recorded().is_empty());
    assert_eq!(state.config.env_var("A"), Some("b"));
    let history: Vec<_> = state.config.history.iter().map(|h| (h.created_by.clone(), h.empty_layer)).collect();
    assert_eq!(
        history,
        [
            (Some("/bin/sh -c #(nop)  ENV A=b".to_string()), true),
            (Some("/bin/sh -c #(nop)  LABEL x=y".to_string()), true)
        ]
    );
    let done = events.iter().filter(|e| matches!(e, BuildEvent::StepDone { layer_size: None, .. })).count();
    assert_eq!(done, 3, "FROM and two config steps, none with a layer");
}

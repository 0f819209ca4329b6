//! BuildKit's status stream as rbuild's [`BuildEvent`]s: `Step N/M : …` for every plan step in
//! order, `Using cache` for a step whose ops BuildKit all had cached, the ops' log lines as the
//! step's output, the step's last op digest as its result, and the time its ops ran (from the
//! first start to the last completion BuildKit reports) as its duration.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::{StatusRequest, StatusResponse};
use tonic::transport::Channel;

use super::SolveInput;
use crate::events::{BuildEvent, OutputStream};

/// Turns status updates into events in plan order, as the classic output reads: the step at
/// the cursor is shown (its logs as they come), later steps' logs wait, and the cursor moves on
/// when every op of the step has completed. Steps with no op (ENV, CMD, ...) pass at once.
pub struct Reporter {
    /// Plan step numbers, in order.
    order: Vec<usize>,
    /// Op digest -> plan step, and the reverse.
    steps: BTreeMap<String, usize>,
    ops: HashMap<usize, BTreeSet<String>>,
    /// Completed ops: whether BuildKit had them cached.
    completed: HashMap<String, bool>,
    /// The last op completed per step (shown as the step's result).
    last_op: HashMap<usize, String>,
    /// When each step's first op started and its last op completed, by BuildKit's clock
    /// (nanoseconds since the epoch): the step's duration.
    span: HashMap<usize, (i128, i128)>,
    logs: HashMap<usize, Vec<(OutputStream, String)>>,
    /// Partial log lines per op.
    partial: HashMap<String, String>,
    /// The first step an op failed in.
    failed: Option<usize>,
    cursor: usize,
    announced: bool,
    step_text: HashMap<usize, (usize, String)>,
    total: usize,
    events: Arc<dyn Fn(&BuildEvent) + Send + Sync>,
}

impl Reporter {
    pub fn new(input: &SolveInput) -> Reporter {
        let steps = input.definition.steps.clone();
        let mut ops: HashMap<usize, BTreeSet<String>> = HashMap::new();
        for (digest, step) in &steps {
            ops.entry(*step).or_default().insert(digest.clone());
        }
        let mut order: Vec<usize> = input.step_text.keys().copied().collect();
        order.sort_unstable();
        Reporter {
            order,
            steps,
            ops,
            completed: HashMap::new(),
            last_op: HashMap::new(),
            span: HashMap::new(),
            logs: HashMap::new(),
            partial: HashMap::new(),
            failed: None,
            cursor: 0,
            announced: false,
            step_text: input.step_text.clone(),
            total: input.total_steps,
            events: Arc::clone(&input.events),
        }
    }

    fn update(&mut self, status: &StatusResponse) {
        for vertex in &status.vertexes {
            let state = if vertex.completed.is_some() { "completed" } else { "started" };
            tracing::debug!(cached = vertex.cached, "BuildKit {state} {}", vertex.name);
            let Some(step) = self.steps.get(&vertex.digest).copied() else { continue };
            if !vertex.error.is_empty() && self.failed.is_none() {
                self.failed = Some(step);
            }
            if vertex.completed.is_some() && vertex.error.is_empty() {
                self.completed.insert(vertex.digest.clone(), vertex.cached);
                self.last_op.insert(step, vertex.digest.clone());
            }
            let nanos = |t: &bollard_buildkit_proto::google::protobuf::Timestamp| {
                i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
            };
            if let (Some(started), Some(completed)) = (&vertex.started, &vertex.completed) {
                let span = self.span.entry(step).or_insert((i128::MAX, i128::MIN));
                *span = (span.0.min(nanos(started)), span.1.max(nanos(completed)));
            }
        }
        for log in &status.logs {
            let Some(step) = self.steps.get(&log.vertex).copied() else { continue };
            let stream = if log.stream == 2 { OutputStream::Stderr } else { OutputStream::Stdout };
            let buffer = self.partial.entry(log.vertex.clone()).or_default();
            buffer.push_str(&String::from_utf8_lossy(&log.msg));
            while let Some(at) = buffer.find('\n') {
                let line: String = buffer.drain(..=at).collect();
                self.logs.entry(step).or_default().push((stream, line.trim_end_matches('\n').to_string()));
            }
        }
        self.advance(false);
    }

    /// Shows what can be shown; `finished` (the solve succeeded) completes every step.
    pub fn advance(&mut self, finished: bool) {
        while let Some(&step) = self.order.get(self.cursor) {
            let (stage, instruction) = self.step_text.get(&step).cloned().unwrap_or_default();
            if !self.announced {
                self.announced = true;
                let cache_key = self.ops.get(&step).and_then(|o| o.iter().next()).cloned().unwrap_or_default();
                (self.events)(&BuildEvent::StepStarted {
                    step,
                    total: self.total,
                    stage,
                    instruction: instruction.clone(),
                    cache_key,
                });
            }
            for (stream, line) in self.logs.remove(&step).unwrap_or_default() {
                (self.events)(&BuildEvent::Output { step, stream, line });
            }
            let ops = self.ops.get(&step);
            let done = finished || ops.is_none_or(|o| o.iter().all(|d| self.completed.contains_key(d)));
            if !done {
                return;
            }
            let cached = ops.is_some_and(|o| o.iter().all(|d| self.completed.get(d) == Some(&true)));
            let is_from = instruction.trim_start().get(..5).is_some_and(|k| k.eq_ignore_ascii_case("FROM "));
            let image_id = self.last_op.get(&step).cloned().unwrap_or_default();
            if cached && !is_from {
                (self.events)(&BuildEvent::CacheHit { step, image_id: image_id.clone() });
            }
            if !image_id.is_empty() {
                let duration_ms = self
                    .span
                    .get(&step)
                    .and_then(|(start, end)| u64::try_from((end - start) / 1_000_000).ok())
                    .unwrap_or(0);
                (self.events)(&BuildEvent::StepDone { step, image_id, layer_size: None, duration_ms, cached });
            }
            self.cursor += 1;
            self.announced = false;
        }
    }
}

impl Reporter {
    /// The step whose op failed first (number and instruction), if one did.
    pub fn failed_step(&self) -> Option<(usize, String)> {
        let step = self.failed?;
        Some((step, self.step_text.get(&step).map(|(_, text)| text.clone()).unwrap_or_default()))
    }
}

/// Follows the status stream until the solve ends; returns the reporter to finish with.
pub async fn follow(mut client: ControlClient<Channel>, request: StatusRequest, mut reporter: Reporter) -> Reporter {
    let Ok(response) = client.status(request).await else { return reporter };
    let mut stream = response.into_inner();
    while let Ok(Some(status)) = stream.message().await {
        reporter.update(&status);
    }
    reporter
}

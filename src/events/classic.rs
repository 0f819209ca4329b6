//! The classic renderer: `docker build`'s output without BuildKit, line for line
//! (`Step 3/7 : RUN …`, ` ---> Using cache`, ` ---> Running in …`, `Removing intermediate
//! container …`, ` ---> <id>`, `Successfully built …`, `Successfully tagged …`), plus one line
//! per cache miss saying why, which Docker does not print.

use std::io::{self, Write};

use super::{short_id, BuildEvent, OutputStream, Renderer};
use crate::events::units::human_size_4 as human_size;

/// Writes classic output; RUN output goes to the same writer, as docker prints it.
pub struct ClassicRenderer<W: Write + Send> {
    out: W,
    /// Print ` ---> Cache miss: …` lines (`--progress plain` keeps them; Docker has none).
    explain_misses: bool,
}

impl<W: Write + Send> ClassicRenderer<W> {
    pub fn new(out: W) -> Self {
        ClassicRenderer { out, explain_misses: true }
    }

    /// Leave out the cache-miss reasons, for output that matches Docker's exactly.
    pub fn without_miss_reasons(mut self) -> Self {
        self.explain_misses = false;
        self
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Renderer for ClassicRenderer<W> {
    fn render(&mut self, event: &BuildEvent) -> io::Result<()> {
        let out = &mut self.out;
        match event {
            BuildEvent::BuildStarted { context_bytes, .. } => {
                writeln!(out, "Sending build context to rbuild  {}", human_size(*context_bytes))?
            }
            BuildEvent::StepStarted { step, total, instruction, .. } => {
                writeln!(out, "Step {step}/{total} : {instruction}")?
            }
            BuildEvent::CacheHit { .. } => writeln!(out, " ---> Using cache")?,
            BuildEvent::CacheMiss { message, .. } => {
                if self.explain_misses {
                    writeln!(out, " ---> Cache miss: {message}")?
                }
            }
            BuildEvent::ContainerStarted { container_id, .. } => {
                writeln!(out, " ---> Running in {}", short_id(container_id))?
            }
            BuildEvent::Output { line, stream, .. } => match stream {
                OutputStream::Stdout | OutputStream::Stderr => writeln!(out, "{line}")?,
            },
            BuildEvent::ContainerRemoved { container_id, .. } => {
                writeln!(out, "Removing intermediate container {}", short_id(container_id))?
            }
            BuildEvent::StepDone { image_id, .. } => writeln!(out, " ---> {}", short_id(image_id))?,
            BuildEvent::Warning { message }
            | BuildEvent::Pull { message, .. }
            | BuildEvent::CacheTransfer { message, .. } => writeln!(out, "{message}")?,
            BuildEvent::Isolation { .. } => {
                if let Some(line) = event.unusual_isolation_line() {
                    writeln!(out, "{line}")?
                }
            }
            BuildEvent::BuildFailed { message, last_image_id, .. } => {
                writeln!(out, "{message}")?;
                if let Some(id) = last_image_id {
                    writeln!(out, "The last image built before the failure is {}", short_id(id))?;
                }
            }
            BuildEvent::BuildDone { image_id, tags, .. } => {
                writeln!(out, "Successfully built {}", short_id(image_id))?;
                for tag in tags {
                    writeln!(out, "Successfully tagged {tag}")?;
                }
            }
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::MissReason;

    fn render(events: &[BuildEvent], explain: bool) -> String {
        let mut r = ClassicRenderer::new(Vec::new());
        if !explain {
            r = r.without_miss_reasons();
        }
        for e in events {
            r.render(e).expect("render");
        }
        String::from_utf8(r.into_inner()).expect("utf8")
    }

    fn step(step: usize, instruction: &str) -> BuildEvent {
        BuildEvent::StepStarted { step, total: 3, stage: 0, instruction: instruction.into(), cache_key: "k".into() }
    }

    fn done(step: usize, id: &str) -> BuildEvent {
        BuildEvent::StepDone { step, image_id: format!("sha256:{id}"), layer_size: None, duration_ms: 1, cached: false }
    }

    #[test]
    fn mirrors_docker_classic_output() {
        let events = vec![
            BuildEvent::BuildStarted { context_files: 3, context_bytes: 2048, total_steps: 3 },
            step(1, "FROM busybox"),
            done(1, "3f57d9401f8d0000"),
            step(2, "ENV REFRESHED_AT 2016-11-09"),
            BuildEvent::CacheHit { step: 2, image_id: "sha256:7995056a97740000".into() },
            done(2, "7995056a97740000"),
            step(3, "RUN echo hi > /x"),
            BuildEvent::cache_miss(3, MissReason::ParentMissed),
            BuildEvent::ContainerStarted { step: 3, container_id: "2c47e1d4c5a80000".into() },
            BuildEvent::Output { step: 3, stream: OutputStream::Stdout, line: "hi".into() },
            BuildEvent::ContainerRemoved { step: 3, container_id: "2c47e1d4c5a80000".into() },
            done(3, "4d6a3b4344790000"),
            BuildEvent::BuildDone {
                image_id: "sha256:4d6a3b4344790000".into(),
                tags: vec!["app:1".into()],
                duration_ms: 5,
            },
        ];
        let expected = "Sending build context to rbuild  2.048kB
Step 1/3 : FROM busybox
 ---> 3f57d9401f8d
Step 2/3 : ENV REFRESHED_AT 2016-11-09
 ---> Using cache
 ---> 7995056a9774
Step 3/3 : RUN echo hi > /x
 ---> Running in 2c47e1d4c5a8
hi
Removing intermediate container 2c47e1d4c5a8
 ---> 4d6a3b434479
Successfully built 4d6a3b434479
Successfully tagged app:1
";
        assert_eq!(render(&events, false), expected);
        let explained = render(&events, true);
        assert!(explained.contains(" ---> Cache miss: parent step missed\n ---> Running in"), "{explained}");
    }

    #[test]
    fn failure_names_the_command_and_last_good_image() {
        let events = vec![BuildEvent::BuildFailed {
            step: Some(4),
            message: "The command '/bin/sh -c false' returned a non-zero code: 1".into(),
            exit_code: Some(1),
            last_image_id: Some("sha256:4d6a3b4344790000".into()),
        }];
        assert_eq!(
            render(&events, true),
            "The command '/bin/sh -c false' returned a non-zero code: 1\nThe last image built before the failure is 4d6a3b434479\n"
        );
    }
}

//! The JSON renderer: one [`BuildEvent`] per line (`--progress json`), the format documented
//! in the module above.

use std::io::{self, Write};

use super::{BuildEvent, Renderer};

pub struct JsonRenderer<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonRenderer<W> {
    pub fn new(out: W) -> Self {
        JsonRenderer { out }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Renderer for JsonRenderer<W> {
    fn render(&mut self, event: &BuildEvent) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::MissReason;

    #[test]
    fn one_event_per_line_with_a_stable_shape() {
        let mut r = JsonRenderer::new(Vec::new());
        let miss =
            BuildEvent::cache_miss(4, MissReason::InstructionChanged { old: "ENV A=1".into(), new: "ENV A=2".into() });
        r.render(&miss).expect("render");
        r.render(&BuildEvent::CacheHit { step: 5, image_id: "sha256:ab".into() }).expect("render");
        let text = String::from_utf8(r.into_inner()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"event":"cache_miss","step":4,"reason":{"reason":"instruction_changed","old":"ENV A=1","new":"ENV A=2"},"message":"instruction changed: ENV A=1 -> ENV A=2"}"#
        );
        assert_eq!(lines[1], r#"{"event":"cache_hit","step":5,"image_id":"sha256:ab"}"#);
        let back: BuildEvent = serde_json::from_str(lines[0]).expect("parse back");
        assert_eq!(back, miss);
    }
}

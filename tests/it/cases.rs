//! The data-driven suites under the normal test harness. Each suite lists its cases as
//! [`Trial`]s (a name, whether it is ignored, and its check), read from the data at run time;
//! `build.rs` reads the same data and generates one `#[test]` per case into `$OUT_DIR`, which
//! the suite `include!`s, so a failure names its case and a filter selects one. Every suite
//! also checks that the generated tests and its cases still agree (`CASES`).

/// Why a case failed.
#[derive(Debug)]
pub struct Failed(String);

impl<M: std::fmt::Display> From<M> for Failed {
    fn from(message: M) -> Failed {
        Failed(message.to_string())
    }
}

/// One case of a data-driven suite.
pub struct Trial {
    name: String,
    ignored: bool,
    check: Box<dyn FnOnce() -> Result<(), Failed>>,
}

impl Trial {
    pub fn test(name: impl Into<String>, check: impl FnOnce() -> Result<(), Failed> + 'static) -> Trial {
        Trial { name: name.into(), ignored: false, check: Box::new(check) }
    }

    pub fn with_ignored_flag(self, ignored: bool) -> Trial {
        Trial { ignored, ..self }
    }
}

/// Runs the case called `name` among `trials`, panicking with its name and why it failed.
pub fn run(trials: Vec<Trial>, name: &str) {
    let Some(trial) = trials.into_iter().find(|t| t.name == name) else {
        panic!("case {name:?} is not in the data any more (build.rs regenerates the tests on the next build)");
    };
    if let Err(Failed(why)) = (trial.check)() {
        panic!("case {name}: {why}");
    }
}

/// Asserts the generated tests (`generated`: name and ignored flag, from `build.rs`) are
/// exactly the suite's cases, so no case goes untested.
pub fn assert_generated(trials: Vec<Trial>, generated: &[(&str, bool)]) {
    let cases: Vec<(String, bool)> = trials.iter().map(|t| (t.name.clone(), t.ignored)).collect();
    let generated: Vec<(String, bool)> = generated.iter().map(|(n, i)| ((*n).to_owned(), *i)).collect();
    assert_eq!(cases, generated, "build.rs and the suite disagree on the cases: rebuild, or fix build.rs");
}

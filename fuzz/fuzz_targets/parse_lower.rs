//! Fuzz target: arbitrary bytes as a Dockerfile through parse and lowering. Any panic or hang
//! is a bug; errors are fine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild::frontend::lower::{parse_and_lower, LowerOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_and_lower(text, "Dockerfile", &LowerOptions::default());
    }
});

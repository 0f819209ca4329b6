//! Generated container names in Docker's `adjective_surname` style (`brave_hopper`), and
//! fresh 64-hex container IDs.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::layer::digest::Sha256Digest;

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "daring", "eager", "fancy",
    "gentle", "glad", "happy", "jolly", "keen", "kind", "lucid", "merry", "nimble", "noble", "polite", "proud",
    "quiet", "rapid", "serene", "sharp", "steady", "swift", "tender", "vivid", "witty", "zealous",
];

const SURNAMES: &[&str] = &[
    "agnesi",
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "dijkstra",
    "euler",
    "faraday",
    "fermi",
    "gauss",
    "germain",
    "hamilton",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "maxwell",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ramanujan",
    "ritchie",
    "shannon",
    "tesla",
    "thompson",
    "turing",
    "volta",
    "wozniak",
];

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 32 bytes that differ between calls and processes (not secret: IDs only need uniqueness).
fn fresh_digest() -> Sha256Digest {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seed = format!("container-{}-{}-{n}", std::process::id(), now.as_nanos());
    Sha256Digest::of(seed.as_bytes())
}

/// A new container ID: 64 lowercase hex digits.
pub fn new_container_id() -> String {
    fresh_digest().hex().to_string()
}

/// A generated name; `attempt` > 0 appends it, as Docker does when a name is taken.
pub fn generated_name(attempt: usize) -> String {
    let digest = fresh_digest();
    let bytes = digest.hex().as_bytes();
    let pick = |i: usize, len: usize| (usize::from(bytes[i]) * 256 + usize::from(bytes[i + 1])) % len;
    let adjective = ADJECTIVES[pick(0, ADJECTIVES.len())];
    let surname = SURNAMES[pick(2, SURNAMES.len())];
    if attempt == 0 {
        format!("{adjective}_{surname}")
    } else {
        format!("{adjective}_{surname}{attempt}")
    }
}

/// Docker's rule for user-given names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_container_id();
        let b = new_container_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn names_look_like_docker_names() {
        let n = generated_name(0);
        let (adj, sur) = n.split_once('_').expect("adjective_surname");
        assert!(ADJECTIVES.contains(&adj) && SURNAMES.contains(&sur), "{n}");
        assert!(generated_name(2).ends_with('2'));
        assert!(is_valid_name(&n));
        assert!(!is_valid_name("-x") && !is_valid_name("a/b") && !is_valid_name(""));
    }
}

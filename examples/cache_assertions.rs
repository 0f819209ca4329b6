//! Reproduce build-cache behaviour in a test suite: build a context twice with
//! `rbuild::engine::Builder` and count the steps that came from the cache.
//!
//! ```sh
//! cargo run --example cache_assertions -- STORE_DIR CONTEXT_DIR
//! ```
//! The store must hold the Dockerfile's base image (`rbuild import` one first). Needs root,
//! because RUN steps run in containers.

use rbuild::engine::{BuildOptions, Builder};
use rbuild::events::BuildEvent;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(store), Some(context)) = (args.next(), args.next()) else {
        eprintln!("usage: cache_assertions STORE_DIR CONTEXT_DIR");
        std::process::exit(2);
    };
    let builder = Builder::open(std::path::Path::new(&store))?;
    let opts = BuildOptions::new(&context);
    let first = builder.build(&opts)?;
    let second = builder.build(&opts)?;
    let hits = |events: &[BuildEvent]| events.iter().filter(|e| matches!(e, BuildEvent::CacheHit { .. })).count();
    println!("first build:  {} ({} cache hits)", first.image_id, hits(&first.events));
    println!("second build: {} ({} cache hits)", second.image_id, hits(&second.events));
    assert_eq!(first.image_id, second.image_id, "an unchanged rebuild gives the same image");
    for event in &second.events {
        if let BuildEvent::CacheMiss { step, message, .. } = event {
            println!("step {step} missed: {message}");
        }
    }
    Ok(())
}

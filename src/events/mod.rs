//! Typed build events and their renderers (classic, tty, json). Filled in by the build-engine issue.

//! Transient containers: namespaces, overlay mounts, pivot_root, process execution and teardown. Filled in by the container-runtime issue.

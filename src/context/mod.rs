//! The build context: walk, .dockerignore, source digests. (in progress)

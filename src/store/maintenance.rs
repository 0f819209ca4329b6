//! Store integrity checks, garbage collection, image removal and pruning.

//! Build plans: stages, steps and cache keys. (in progress)

//! OCI distribution API client: pull, push, cache import and export. Not implemented yet.

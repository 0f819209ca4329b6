//! The content-addressed local store: OCI image layout, tags, cache records, unpacked layers, locking and garbage collection. Filled in by the image-store issue.

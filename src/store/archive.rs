//! Save and load of docker-archive and OCI archive tarballs.

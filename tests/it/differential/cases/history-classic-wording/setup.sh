# The hashes cover the mode: make it what git does not keep.
chmod 0644 f1 f2 d/x
chmod 0755 d

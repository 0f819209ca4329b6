ln -s real.txt tree/rel-link && ln -s /etc/passwd tree/abs-link && ln -s missing tree/dangling

mkdir -p src/d && echo x > src/d/f && chown -R 5:6 src/d
tar --numeric-owner -C src -cf owned.tar d && rm -rf src

mkdir -p src/app/bin && echo run > src/app/bin/run && chmod 755 src/app/bin/run && ln -s bin/run src/app/start
tar --numeric-owner --owner=0 --group=0 -C src -czf app.tar.gz app && rm -rf src

mkdir -p src/pkg/lib && echo one > src/pkg/lib/one && echo two > src/pkg/two && chmod 750 src/pkg
tar --numeric-owner --owner=0 --group=0 -C src -cf pkg.tar pkg && rm -rf src

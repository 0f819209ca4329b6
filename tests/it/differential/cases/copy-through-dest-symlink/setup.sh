mkdir -p src/pkg && echo p > src/pkg/p && tar --numeric-owner --owner=0 --group=0 -C src -cf pkg.tar pkg && rm -rf src

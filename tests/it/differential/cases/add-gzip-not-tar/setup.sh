# A gzipped text, a gzipped text named like a tarball, and a real tarball (git cannot store
# the gzip files reproducibly, so they are made here).
printf 'some notes\n' > notes.txt && gzip -n notes.txt
printf 'not a tar at all\n' | gzip -n > fake.tar.gz
mkdir -p real && printf 'inside\n' > real/inside.txt
tar -cf - real | gzip -n > real.tar.gz && rm -r real

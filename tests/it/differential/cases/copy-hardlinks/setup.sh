# Three names for one inode, and an unrelated file.
mkdir -p data && printf 'shared\n' > data/a && ln data/a data/b && ln data/a data/c
printf 'alone\n' > data/d

chmod 700 private && chmod 711 private/inner && chmod 755 exec.sh

#!/bin/sh
# Serve /var/www/html on port 80 in the foreground.
exec httpd -f -p 80 -h /var/www/html

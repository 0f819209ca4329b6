chmod 750 dir && chmod 711 dir/sub

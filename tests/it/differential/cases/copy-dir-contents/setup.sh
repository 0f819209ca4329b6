chmod 750 dir/nested && chmod 600 dir/top.txt && chmod 700 dir/nested/deep

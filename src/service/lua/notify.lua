-- NOTIFY: KEYS done -> 1 (puts back a marker queue_wait_any took)
notify(KEYS[1])
return 1

"""What operators watch: Prometheus metrics (metrics.py) and the JSON event stream (events.py).

Both read the controller from outside: the journal's typed events (core/journal.py listeners),
the store, and three small observation points (the monitor's probe results, the hook
executor's runs, the dispatcher's calls). Nothing here changes state. docs/metrics.md.
"""

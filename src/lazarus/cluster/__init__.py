"""Several controllers: leadership over the Coordination port (leadership.py) and epoch
fencing of the store's writes (fenced.py). Sees only ports and domain, like core."""

"""APScheduler wiring: when things run. What runs lives in `aivo.training`."""

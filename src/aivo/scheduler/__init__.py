"""APScheduler wiring: when things run. What a firing does is given to it (`aivo.services.scheduler`)."""

"""The Flower App (FAB) that `aivo federation run` submits: see pyproject.toml here."""

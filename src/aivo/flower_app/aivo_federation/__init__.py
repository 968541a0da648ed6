"""Entry points that Flower loads from the FAB (`aivo_federation.server_app:app`, `...client_app:app`)."""

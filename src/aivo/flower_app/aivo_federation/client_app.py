"""The site's ClientApp (run by each SuperNode as `flwr-clientapp`, in the site's environment)."""

from aivo.services.site_identity import site_client_app

app = site_client_app()

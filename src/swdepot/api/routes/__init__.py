"""One module per resource; :data:`ROUTES` is what the app serves."""

from swdepot.api.routes import cluster, download, jobs, packages, upload

ROUTES = [*cluster.ROUTES, *download.ROUTES, *packages.ROUTES, *jobs.ROUTES, *upload.ROUTES]

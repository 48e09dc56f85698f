"""One module per resource; :data:`ROUTES` is what the app serves."""

from swdepot.api.routes import cluster, download, jobs, packages, runtime

ROUTES = [*cluster.ROUTES, *download.ROUTES, *packages.ROUTES, *jobs.ROUTES, *runtime.ROUTES]

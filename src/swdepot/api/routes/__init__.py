"""One module per resource; :data:`ROUTES` is what the app serves."""

from swdepot.api.routes import (
    cluster,
    download,
    jobs,
    metrics,
    openapi,
    packages,
    runtime,
    upload,
)
from swdepot.web import routes as web

ROUTES = [*cluster.ROUTES, *download.ROUTES, *packages.ROUTES, *jobs.ROUTES, *upload.ROUTES,
          *metrics.ROUTES, *runtime.ROUTES, *openapi.ROUTES, *web.ROUTES]

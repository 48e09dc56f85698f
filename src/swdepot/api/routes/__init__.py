"""One module per resource; :data:`ROUTES` is what the app serves."""

from swdepot.api.routes import (
    cluster,
    download,
    jobs,
    metrics,
    nodes,
    openapi,
    packages,
    passthrough,
    runtime,
    session,
    upload,
)
from swdepot.web import routes as web

# Starlette tries routes in order and no two paths overlap, so the most polled resources
# (jobs, the download status) come first: every request pays for the routes before its own.
ROUTES = [*jobs.ROUTES, *download.ROUTES, *packages.ROUTES, *cluster.ROUTES, *nodes.ROUTES,
          *upload.ROUTES, *passthrough.ROUTES,
          *metrics.ROUTES, *runtime.ROUTES, *session.ROUTES, *openapi.ROUTES, *web.ROUTES]

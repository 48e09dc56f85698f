"""``/api/swdepot/session``: who the caller is and what they may do (not an ONTAP endpoint).

The web page reads it to show only the controls the caller's role allows.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swdepot.api.http import principal, respond
from swdepot.auth import ADMIN


async def get_session(request: Request) -> Response:
    """The authenticated user's name, role and whether that role may write."""
    who = principal(request)
    return respond(request, {"user": who.name, "role": who.role, "may_write": who.role == ADMIN,
                             "_links": {"self": {"href": "/api/swdepot/session"}}})


ROUTES = [Route("/api/swdepot/session", get_session, methods=["GET"])]

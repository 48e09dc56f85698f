"""ONTAP's JSON for the domain's values: one module per resource.

The domain (``jobs/``, ``software/``, ``repository/`` …) returns typed values and knows
nothing of REST; these functions alone decide how a value looks on the wire: field
names and order, nesting, ISO-8601 date-times, HAL ``_links``. Each returns a new dict
that its caller may narrow (``api/query.py``) and encode (``api/http.py``); the same
value always gives the same bytes, which the web page and every client rely on.
"""

"""ONTAP's CLI passthrough, ``/api/private/cli/...``, for the commands swdepot serves.

ONTAP maps a CLI command onto a path and a method ("Using the private CLI passthrough
with the ONTAP REST API"): ``show`` → GET, ``create`` → POST, ``modify`` → PATCH,
``delete`` → DELETE on the command's path without that verb; ``show-X`` and ``delete-X``
→ GET and DELETE on ``…/X``; any other verb → POST on the full path (``cluster image
package get`` → ``POST /api/private/cli/cluster/image/package/get``).

:mod:`.command` holds those conventions (parameters, answers, jobs); :mod:`.image` and
:mod:`.ha` the commands, each a thin translation onto the same domain services the REST
endpoints call. ``docs/compatibility.md`` lists every command with its sources.
"""

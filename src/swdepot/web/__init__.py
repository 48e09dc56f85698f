"""The operator's web page and the interactive API documentation, served by the service.

Plain HTML, CSS and JavaScript shipped inside the package (no build step, no CDN):
the page is a client of the same REST API that ONTAP clients use, behind the same
Basic login.
"""

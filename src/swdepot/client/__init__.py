"""swdepot's command-line client: talks to a running service over its REST API.

``connection`` resolves where and as whom to connect (flags, environment, a config
file); ``rest`` is the HTTP client and knows nothing about terminals; ``follow``
polls jobs to their end; ``render`` draws tables and progress bars (or JSON); and
``commands`` wires them into ``swdepot package …`` and ``swdepot job …``.
"""

"""The HTTP API layer: ONTAP's REST conventions and the endpoints built on them."""

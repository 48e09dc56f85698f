"""Asynchronous jobs: ONTAP's job object, its store interface and the runner."""

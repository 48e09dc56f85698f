"""Software package format: naming rules, streaming validation and a package builder."""

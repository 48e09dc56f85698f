"""Storage adapters for the domain's store interfaces (SQLite is the embedded default)."""

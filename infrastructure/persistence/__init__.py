"""Storage adapters for the domain's ports."""

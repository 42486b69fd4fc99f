"""Edgewise domain: the pure model of typed graphs. Standard library only."""

"""Edgewise benchmarks (``make bench``; not part of ``make test``). See docs/benchmarks.md."""

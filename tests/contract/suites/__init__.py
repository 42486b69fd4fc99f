"""Abstract contract suites, one module per port. Not collected (no ``test_`` prefix):
adapter modules (tests/contract/test_*_adapters.py) subclass them with a fixture mixin."""

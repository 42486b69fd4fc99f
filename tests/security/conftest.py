"""Fixtures of the security suite (tests/security/support.py holds the helpers)."""

import pytest

from tests.security.support import Keys, keys


@pytest.fixture(scope="session")
def suite_keys(tmp_path_factory) -> Keys:
    """The suite's signing keys: an HS256 secret, RSA and P-256 PEM keys, an RSA key in a JWKS file."""
    return keys(tmp_path_factory.mktemp("sec-keys"))

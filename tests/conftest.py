"""Suite-wide fixtures. The DynamoDB ones (tests/dynamodb_support.py) are lazy: moto
starts only when a test asks for ``moto_server`` / ``dynamo_settings`` / ``dynamo``."""

from tests.dynamodb_support import dynamo, dynamo_settings, moto_server  # noqa: F401  (fixtures)

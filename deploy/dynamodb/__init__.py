"""DynamoDB table definitions (``deploy.dynamodb.tables``), the single source of truth."""

"""Deployment artefacts. ``deploy.dynamodb`` is importable data (standard library only)."""

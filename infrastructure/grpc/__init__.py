"""gRPC transport shared by both services: server factory, interceptors, error mapping,
request validation and resource-name parsing."""

"""The Envoy edge (DESIGN §9): one gRPC listener and one REST/JSON listener in front of the
command service and the query workers.

``gateway.settings`` reads the environment, ``gateway.config`` renders the Envoy bootstrap
from it, ``gateway.launcher`` validates and runs the real ``envoy`` binary (``python -m
gateway``). Nothing here imports a service package: the edge knows the services only by
their gRPC names and addresses.
"""

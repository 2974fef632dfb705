"""Integrations of Baseplate with the frameworks that serve requests: Pyramid and Thrift."""

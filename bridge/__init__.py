"""OpenTelemetry add-ons that Baseplate stands on.

This package never imports :mod:`baseplate`: it is a plain OpenTelemetry
extension (id generation, sampling, propagation, span processing and export)
usable by any application.
"""

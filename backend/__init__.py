"""The HTTP service: webhook receiver, ML-backend protocol, snapshot API, ops routes.

Build it with :func:`backend.app.create_app`; nothing here runs at import.
"""

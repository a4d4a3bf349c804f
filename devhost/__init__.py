"""A local Azure Functions host for v2-programming-model Python apps.

It runs an app from its decorators and host.json, with the real host's semantics for HTTP
routes, queue triggers (batching, back-off, visibility, poison queue, message encoding) and timer
triggers (NCRONTAB, run on startup, one instance at a time). It knows nothing about the app.
"""

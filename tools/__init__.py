"""Local development tooling: starting Azurite, running the app locally. Not deployed."""

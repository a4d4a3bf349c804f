"""Measurements of the job pipeline on this machine, against Azurite on loopback."""

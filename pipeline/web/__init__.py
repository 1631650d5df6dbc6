"""The web app: the providers' private self-test and the assessors' review workspace (``qpm-screen web``)."""

"""What tests share: clients, documents, media, measurements, workers and servers.

Test modules import from here and never from one another.
"""

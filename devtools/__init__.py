"""Development tools beside the service: the simulator, seeded messy lists, a private
redis-server.
"""

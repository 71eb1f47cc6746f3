"""The operator edge: command line, demo, progress, reports, and the launch module that
starts and follows runs. The one package that may import `workers`.
"""

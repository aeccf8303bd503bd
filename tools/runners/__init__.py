"""Processes the tools and tests start and wait for: a private Mosquitto on a free loopback
port, `signet gateway run` as a child, and polling with a deadline. Imports nothing above.
"""

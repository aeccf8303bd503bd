# Device entry point: load /config.json, start the agent, run it forever
# (signet/run.py). Kept this small because a board compiles main.py into its heap
# at every boot; the package's code stays in flash on a firmware with signet frozen in.
from signet.run import main

main("config.json")  # relative: a board starts main.py in /

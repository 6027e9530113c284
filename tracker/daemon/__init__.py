"""The daemon: command-line options, the service tree, listening, and the twistd plugin."""

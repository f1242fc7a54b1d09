"""The reference inventory API (FastAPI on SQLite) that the warehouse tools talk to.

Start it in-process with `device.inventory.server.serve_inventory`, or from the command line
with `warehouse-voice inventory serve` (`device.inventory.cli`). This package file imports
nothing, so the CLI can register the subcommand without loading the server stack.
"""

"""Simulators for running the appliance without Google, hardware or a sound card.

The Live API emulator: `emulator.Emulator` (server), `scenario` (scripts and faults), `tls`
(its private CA), `vad` (turn ends in samples), `cli` (the `emulator` subcommand).
Virtual audio devices and synthesized speech live in `alsa`, `pulse` and `speech`.

Nothing is imported here, so importing one simulator never pulls in another's dependencies.
"""

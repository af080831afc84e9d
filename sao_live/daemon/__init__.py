"""The daemon behind `sao-live serve`: OSC in, scheduler, model worker, clip store, DAW export.

`daemon.py` holds the lifecycle and reads top to bottom; the other modules are its parts
(docs/architecture.md has the flow). The control process never imports torch: only the worker does.
"""

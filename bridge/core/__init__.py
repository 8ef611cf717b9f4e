"""The pure core: datapoints, codec, read coalescing, command parsing, errors.

Standard library only, no I/O (tests/unit/test_layers.py enforces it), so every
rule here is tested with plain tables and no broker, port or event loop.
"""

"""Modbus side (the only pymodbus importer): the per-port bus, the client registry,
and the simulated units the tests and the demo talk to."""

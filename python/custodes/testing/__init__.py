"""Tools for testing code that plugs into custodes: :mod:`custodes.testing.conformance`, the driver
contract's conformance suite a vendor runs in its own CI on its own sample volume."""

"""Plugins that ship inside custodes, registered like any third-party plugin."""

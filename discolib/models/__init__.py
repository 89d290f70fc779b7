"""Devices, checkpoints and every model family discolib loads."""

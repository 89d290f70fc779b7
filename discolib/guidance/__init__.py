"""CLIP guidance: cutouts and losses."""

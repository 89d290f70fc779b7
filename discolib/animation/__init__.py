"""Motion, coherence, noise, the per-run plan and the per-frame animation step."""

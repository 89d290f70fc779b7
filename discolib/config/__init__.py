"""Settings schema, presets and Disco/Deforum importers (torch-free)."""

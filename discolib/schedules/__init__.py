"""Keyframe expressions, schedules, cut schedules and prompts (torch-free)."""

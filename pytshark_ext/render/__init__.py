"""Renderers: turn result records into text, JSON and annotated captures (no analysis here)."""

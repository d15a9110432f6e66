"""Observation: traces of every assembled context, and their replay."""

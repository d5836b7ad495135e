"""Sensors that start refreshes when new source data lands."""

"""Helpers shared by the test modules (real peers, fixtures)."""

"""Test support shared across suites: real local receivers."""

"""Tests (a package: helpers import as ``tests.<dir>.<module>``)."""

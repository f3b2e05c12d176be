"""Tests of the damage-mapping job (their fixtures live in this folder's conftest)."""

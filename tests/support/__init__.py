"""Helpers the tests share, imported explicitly (`from tests.support.rasters import ...`);
the conftest files hold only fixtures."""

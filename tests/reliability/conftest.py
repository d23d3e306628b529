"""The reliability tests use the shared fixtures of tests/conftest.py (kmock's emulator, moto in server mode)."""

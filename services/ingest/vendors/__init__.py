"""Vendor wire formats: pure mapping from each vendor's payloads to VendorSamples (no I/O)."""

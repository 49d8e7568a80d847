"""Developer tools (benchmarks); not part of any deployed service."""

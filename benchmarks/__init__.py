"""The benchmark scripts: every number in docs/results.md and docs/benchmarks.md comes from one of them.

Run each from the repository root as ``python -m benchmarks.NAME`` (with gmmgan installed, or
``PYTHONPATH=src``); ``--help`` says what it measures. Shared pieces: :mod:`benchmarks._common`
(data, timing, machine facts, JSON) and :mod:`benchmarks._results` (the results-table jobs).
"""

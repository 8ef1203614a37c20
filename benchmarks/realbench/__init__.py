"""The pieces of benchmarks/real_model_suite.py: machine and load, data, the sides, scoring, the report."""

"""`make results`: every task of the mission on public data, four training methods, one table
per task in RESULTS.md (see plan.py for what runs, run.py to run it, report.py for the tables)."""

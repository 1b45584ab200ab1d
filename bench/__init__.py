"""End-to-end HTTP benchmark of the HOMETOWN endpoint (`python -m bench`).

Timings on shared 2-core machines are noisy, so every HTTP number is paired with
the bare SQL cost of the same candidate query, measured by pgbench in the same run
on the same database: the ratio says what the service adds on top of PostgreSQL.
"""

"""The consumer's side of the stack outputs: `scripts/verify` (verify.py) proves each exported
connection works as Airflow will use it, `scripts/astro-env` (astro_env.py) hands the connections
to Astro Deployments. Both read their input through inputs.py.
"""

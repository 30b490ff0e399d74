"""A small charges API with Flask and flask_envroute: sandbox keys get mock data, live keys
get the real database (a SQLite file). See README.md."""

"""What runs inside a job: room transport, pipelines, providers and the agent itself.

Nothing in this package imports FastAPI or ``app``: the service hands a job over through
:mod:`agents.job` and gets the outcome back the same way.
"""

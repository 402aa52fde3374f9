"""Job lifecycle: the manager, its records, the job_id registry and token minting."""

"""Built-in executors: where the units of a sweep run (this process, worker processes, Slurm, Ray)."""

"""`fishflow status <out>`: how far a run is, from its files (and Slurm), for any run."""

"""Running a cell: interpreters and their environments, the managed child servers (Granian, nginx), the hosts
the load runs on, the load generators, the sampler, the machine lock, and the session runner that stores one
record per cell. Imports from core and study, never from report."""

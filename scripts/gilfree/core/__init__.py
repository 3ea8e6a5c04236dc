"""The bottom layer: what every other layer needs and that knows nothing of studies, servers or reports
(statistics, typed warnings, argument checks)."""

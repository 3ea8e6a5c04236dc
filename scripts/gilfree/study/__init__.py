"""The study as data: the study file's schema, the cells it expands to, the post's published figures, and the
records a run stores (the JSON contract between running and reporting). Imports only from core."""

"""Reporting: Markdown tables, charts, the comparison with the post and its verdicts, the scaling report, all
re-rendered from stored records without running anything."""

"""Results tables, summaries, Markdown reports and figures (Prefect-free; the flows publish them)."""

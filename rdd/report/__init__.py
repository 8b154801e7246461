"""HTML reports of a study: the paper's tables beside ours, claims with verdicts, provenance.

`python -m rdd.report build` reads the manifest the workflow writes and the records
it lists (nothing else), writes tidy CSVs and one self-contained HTML page;
`python -m rdd.report index` links the reports. See reports/README.md.
"""

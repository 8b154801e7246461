"""The report's one input error (here, apart from the modules that read pandas, so that the
workflow's config check can read the paper values without them)."""


class ReportInputError(ValueError):
    """A manifest, record or paper values file that cannot be used; the message names the file."""

"""The self-contained HTML run report (``archsmith report RUN``).

One file with inline CSS and inline SVG plots, no script and nothing fetched, so it can be mailed,
archived and opened offline exactly as it was written. ``archsmith.report.html`` writes it (its
views, number formats, plots and SVG drawing in the modules beside it); this package imports none
of them, so ``archsmith.report.svg`` (which the bench's plots use too) comes without the page.
"""

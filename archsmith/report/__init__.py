"""The self-contained HTML run report (``archsmith report RUN``).

One file with inline CSS and inline SVG plots, no script and nothing fetched, so it can be mailed,
archived and opened offline exactly as it was written.
"""

from archsmith.report.html import ReportData, render_report, write_report

__all__ = ["ReportData", "render_report", "write_report"]

"""County, school and contractor figures (report.py is the entry point) and the daily summaries they read
(summaries.py). The package exposes no names itself: the maintenance run imports summaries while the
counts import the maintenance run's marks, so each caller imports the module it needs."""

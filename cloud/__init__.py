"""ClassOps cloud service: assets, device presence and attendance for the schools of a county."""

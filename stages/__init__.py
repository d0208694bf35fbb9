"""The stage scripts: `python -m stages.<name> …`, one per stage of dvc.yaml."""

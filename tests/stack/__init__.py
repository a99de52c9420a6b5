"""The shipped deployment files: app instances behind real nginx."""

"""All SQL of the service, one module per aggregate. Nothing outside this package speaks SQL."""

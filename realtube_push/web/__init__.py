"""What the REST routes (``api/``) and the live routes (``push/``) share at the HTTP edge.

The error shape, who the client is (its address, the process's services behind a request),
whether its ``Origin`` may talk to us and whether it holds an admin session. It sits below
both so that neither imports the other.
"""

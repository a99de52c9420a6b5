"""The server's contract over real sockets, PostgreSQL and Redis."""

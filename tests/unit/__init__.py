"""Pure logic: no server, database or network."""

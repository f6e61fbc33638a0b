"""Everything editgraph persists: tables, the database engine and the media store."""

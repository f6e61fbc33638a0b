"""editgraph: a GraphQL server for non-destructive video editing."""

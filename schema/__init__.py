"""The GraphQL surface: Strawberry types, inputs, unions and the Query/Mutation roots."""

"""Service layer: the functions the CLI and the API call. Each composes the registry, the data
layer and the models; none of them parses user input formats or prints."""

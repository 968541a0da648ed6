"""Every use case, one module per capability: the only layer the CLI and the API call. Each
function composes the domain packages and the registry, owns its transactions, and returns one
report type; none parses user input formats or prints. No domain package imports this one."""
